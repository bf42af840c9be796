"""How fresh partitions land without anyone clicking: schedules for the sources, automation
conditions for everything derived from them."""
