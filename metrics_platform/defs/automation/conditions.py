"""Automation conditions of the derived assets.

- Hourly values follow their sources: an hour is (re)computed whenever any source lands or
  re-lands it. They do not wait for a source that failed or is late (a missing parent): the
  sources that did land are combined now, and the hour is recomputed when the others arrive.
- Daily values wait for their whole day: once all 24 hours (and the sources' own daily assets)
  are in, and again whenever any of them changes, so a corrected hour re-rolls its day.

Neither is limited to the latest partition: a late or corrected hour from last month propagates
as surely as the hour that just closed.

"Updated" is remembered until the automation *requests* the partition, not until the partition
is next written: a source that re-lands an hour while a long recomputation of that hour is
running still gets the hour recomputed once more. (The remaining window: a source landing
between the request and the next evaluation, after the requested run has read its inputs.)
"""

import dagster as dg

_requested = (
    dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
).with_label("requested")
_updated = dg.AutomationCondition.any_deps_updated().since(_requested)
_quiet = ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()

FOLLOW_ANY_SOURCE = (_updated & _quiet).with_label("any source landed")

WHEN_THE_DAY_IS_COMPLETE = (
    _updated & ~dg.AutomationCondition.any_deps_missing() & _quiet
).with_label("whole day landed")
