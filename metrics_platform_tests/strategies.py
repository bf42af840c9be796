"""Hypothesis strategies shared by the tests of the sources' normalizers."""

from hypothesis import strategies as st

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), st.text(max_size=8)
)


def json_containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    )


# Any JSON document, small: what a misbehaving API may answer.
json_values = st.recursive(json_scalars, json_containers, max_leaves=12)
