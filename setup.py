from setuptools import find_packages, setup

# Dagster core and its libraries are released in lock-step: keep these pins together.
DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBRARY_VERSION = "0.29.27"

setup(
    name="metrics_platform",
    version="0.1.0",
    description=(
        "Dagster assets that turn a SaaS company's operational data into hourly and daily "
        "business metrics in Postgres, read by Grafana."
    ),
    license="Apache-2.0",
    packages=find_packages(exclude=["metrics_platform_tests*", "benchmarks*"]),
    package_data={"metrics_platform": ["py.typed", "demo/*.yaml"]},
    python_requires=">=3.10,<3.14",
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-graphql=={DAGSTER_VERSION}",
        f"dagster-postgres=={DAGSTER_LIBRARY_VERSION}",
        # `dg`: Dagster's command line (`dg dev`, `dg launch`, `dg check defs`, `dg list defs`).
        f"dagster-dg-cli=={DAGSTER_VERSION}",
        "pandas>=2.2",
        "sqlalchemy>=2.0",
        "psycopg2-binary>=2.9",
        "google-api-python-client>=2.100",
        "requests>=2.31",
        "pyyaml>=6.0",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # `make test` runs the suite in two workers (`-n 2 --dist loadgroup`).
            "pytest-xdist>=3.6",
            "hypothesis>=6.100",
            "ruff>=0.6",
            # Drives Debian's chromium in the browser test of the Dagster UI (no browser download).
            "playwright>=1.65",
            # Grafana Labs' dashboard SDK, for `python -m metrics_platform.lib.dashboards`.
            "grafana-foundation-sdk==1769699379!11.6.0; python_version >= '3.11'",
        ],
    },
    entry_points={"console_scripts": ["metrics-platform=metrics_platform.cli:main"]},
)
