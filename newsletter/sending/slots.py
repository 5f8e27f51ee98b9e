"""Send slots: when a worker may hand a message to SES."""

from __future__ import annotations

# A slot older than this is dropped rather than used late: late sends would bunch up
# and break the rate in some one-second window.
STALE_SLOT = 0.01
# A thread that gets to the SES call this late (a busy CPU) gives its slot up and the
# message goes back in line for a new one: sending anyway would bunch messages up.
LATE_SLOT = 0.02
# Hand a message to a thread this long before its slot (the thread waits the rest).
SLOT_LEAD = 0.02
