"""Generated XPM time-entry documents for the benchmarks (deterministic, realistic field mix)."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def time_entries_xml(count: int, seed: int = 7) -> bytes:
    """An XPM ``time.api/list`` response with ``count`` entries (~625 bytes each)."""
    rng = random.Random(seed)
    staff = [(_uuid(rng), f"Staff Member {i}") for i in range(150)]
    tasks = [(_uuid(rng), f"Task type {i}") for i in range(400)]
    start = date(2025, 1, 1)
    parts = ["<Response api-method=\"List\"><Status>OK</Status><Times>"]
    for i in range(count):
        staff_uuid, staff_name = rng.choice(staff)
        task_uuid, task_name = rng.choice(tasks)
        day = start + timedelta(days=rng.randrange(365))
        ranged = rng.random() < 0.2
        times = "<Start>09:00</Start><End>10:30</End>" if ranged else ""
        parts.append(
            f"<Time><UUID>{_uuid(rng)}</UUID><Job><ID>J{rng.randrange(1, 4000):06d}</ID><Name>Annual accounts &amp; tax "
            f"return FY{rng.randrange(20, 27)}</Name></Job><Task><UUID>{task_uuid}</UUID><Name>{task_name}</Name></Task>"
            f"<Staff><UUID>{staff_uuid}</UUID><Name>{staff_name}</Name></Staff><Date>{day.isoformat()}T00:00:00</Date>"
            f"<Minutes>{rng.choice((15, 30, 45, 60, 90, 120, -30))}</Minutes><Note>Worked on reconciliation item "
            f"{i} for the client file, reviewed bank feeds</Note><Billable>{'true' if rng.random() < 0.8 else 'false'}"
            f"</Billable>{times}<InvoiceTaskUUID /></Time>"
        )
    parts.append("</Times></Response>")
    return "".join(parts).encode()
