"""Seeded generator of practice data: the same seed and the same clock date give byte-identical XPM answers.

Every random draw comes from a ``random.Random`` seeded per tenant and per concern, in a fixed order,
never from ``hash()`` or set iteration, so the output is stable across runs and processes. Dates are
laid out around "today" from the sandbox clock: time entries span three years back and one ahead,
completed jobs lie in the past, active jobs run from two years back into the coming year.

Time entries dominate (300,000 on ``large``); their loop binds everything locally, draws from
precomputed tables and reuses shared ``date`` objects, so ``large`` builds in a few seconds.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from xpm_pipeline.sandbox import names as N
from xpm_pipeline.sandbox.model import (
    Client, ClientType, Contact, Group, Job, JobTask, Note, Staff, TaskType, TimeEntry, epoch,
)
from xpm_pipeline.sandbox.state import BASE_JOB_STATES, SandboxState, TenantState, uuid_from

UTC = timezone.utc
DAY = 86400


@dataclass(frozen=True)
class Size:
    clients: int
    active_jobs: int
    completed_jobs: int
    staff: int
    tasks: int
    times: int


SIZES = {
    "small": Size(clients=40, active_jobs=25, completed_jobs=15, staff=6, tasks=15, times=2_000),
    "medium": Size(clients=500, active_jobs=300, completed_jobs=220, staff=30, tasks=30, times=30_000),
    "large": Size(clients=5_000, active_jobs=3_000, completed_jobs=2_200, staff=150, tasks=60, times=300_000),
}
JOB_PREFIXES = ("J", "J", "JOB", "W")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Durations people record, weighted towards the common ones.
MINUTES = (15, 15, 30, 30, 30, 45, 60, 60, 60, 60, 90, 90, 120, 120, 180, 240, 20, 10, 75, 150)


def ascii_fold(text: str) -> str:
    """"Siobhán Åberg" -> "Siobhan Aberg", for e-mail addresses and slugs."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def tenant_ids(seed: int, count: int) -> list[str]:
    return [uuid_from(random.Random(f"tenant:{seed}:{i}")) for i in range(count)]


def build_state(size: str, seed: int, tenants: int, now: datetime) -> SandboxState:
    return SandboxState([build_tenant(size, seed, i, now) for i in range(tenants)])


def build_tenant(size: str, seed: int, index: int, now: datetime) -> TenantState:
    """One practice. Tenant 0 of a seed is the same whatever the tenant count."""
    spec = SIZES[size]
    rng = random.Random(f"data:{seed}:{index}")
    tenant_id = tenant_ids(seed, index + 1)[index]
    practice = N.PRACTICES[(seed * 7 + index) % len(N.PRACTICES)]
    states = dict(BASE_JOB_STATES)
    if index % 2 == 1:  # practices rename states in XPM Admin; the interface codes stay
        states["INPROGRESS"] = ("Work in Progress", False)
    tenant = TenantState(
        tenant_id=tenant_id, name=practice, size=size, seed=seed, job_prefix=JOB_PREFIXES[index % len(JOB_PREFIXES)],
        job_states=states, short_code=f"{seed % 10000:04d}{index:02d}",
    )
    tenant.rng = random.Random(f"writes:{seed}:{index}")
    gen = _Generator(tenant, spec, rng, now)
    gen.staff()
    gen.task_list()
    gen.clients()
    gen.groups()
    gen.jobs()
    gen.times()
    return tenant


class _Generator:
    def __init__(self, tenant: TenantState, spec: Size, rng: random.Random, now: datetime) -> None:
        self.t = tenant
        self.spec = spec
        self.rng = rng
        self.now = now.astimezone(UTC)
        self.today = self.now.date()
        self.domain = "".join(ch for ch in tenant.name.lower().split()[0] if ch.isascii() and ch.isalnum()) or "firm"
        self.used_names: set[str] = set()

    def uuid(self) -> str:
        return uuid_from(self.rng)

    def person(self) -> tuple[str, str]:
        return self.rng.choice(N.FIRST_NAMES), self.rng.choice(N.LAST_NAMES)

    def phone(self) -> str:
        return f"0{self.rng.randint(3, 9)} {self.rng.randint(200, 999)} {self.rng.randint(1000, 9999)}"

    def moment_between(self, start: datetime, end: datetime) -> datetime:
        span = max(0, int((end - start).total_seconds()))
        return start + timedelta(seconds=self.rng.randint(0, span))

    # -- staff and task list ----------------------------------------------------------------------

    def staff(self) -> None:
        seen: set[str] = set()
        for i in range(self.spec.staff):
            first, last = self.person()
            while f"{first} {last}" in seen:
                first, last = self.person()
            seen.add(f"{first} {last}")
            email_local = "".join(ch for ch in ascii_fold(f"{first}.{last}").lower() if ch.isalnum() or ch == ".")
            staff = Staff(
                uuid=self.uuid(), name=f"{first} {last}", email=f"{email_local}@{self.domain}.example",
                phone=self.phone() if self.rng.random() < 0.6 else "", mobile=f"021 {self.rng.randint(100, 999)} {self.rng.randint(1000, 9999)}",
                address="", payroll_code=f"P{i + 1:04d}" if self.rng.random() < 0.7 else "",
            )
            self.t.staff[staff.uuid] = staff

    def task_list(self) -> None:
        for name in N.TASK_NAMES[: self.spec.tasks]:
            description = "" if self.rng.random() < 0.5 else f"Standard {name.lower()} work"
            task = TaskType(uuid=self.uuid(), name=name, description=description)
            self.t.task_types[task.uuid] = task

    # -- clients ----------------------------------------------------------------------------------

    def client_name(self) -> tuple[str, bool]:
        rng = self.rng
        for attempt in range(50):
            roll = rng.random()
            if roll < 0.3:
                first, last = self.person()
                name, individual = f"{first} {last}", True
            elif roll < 0.38:
                name, individual = f"{rng.choice(N.LAST_NAMES)} Family Trust", False
            else:
                suffix = rng.choice(N.BUSINESS_SUFFIXES)
                name = f"{rng.choice(N.BUSINESS_PREFIXES)} {rng.choice(N.BUSINESS_TRADES)} {suffix}".strip()
                individual = False
            if attempt > 20:
                name = f"{name} ({rng.choice(N.CITIES)[0]})"
            if name.casefold() not in self.used_names:
                self.used_names.add(name.casefold())
                return name, individual
        name = f"{name} {len(self.used_names)}"
        self.used_names.add(name.casefold())
        return name, individual

    def clients(self) -> None:
        rng, t = self.rng, self.t
        staff = list(t.staff.values())
        types = [ClientType(name=n, cost_markup=m, payment_term=p, payment_day=d) for n, m, p, d in N.CLIENT_TYPES]
        five_years = self.now - timedelta(days=5 * 365)
        for seq in range(1, self.spec.clients + 1):
            name, individual = self.client_name()
            city, region, post_code = rng.choice(N.CITIES)
            created = self.moment_between(five_years, self.now - timedelta(days=30))
            modified = self.moment_between(created, self.now - timedelta(hours=1))
            client = Client(
                seq=seq, uuid=self.uuid(), name=name, email="", website="", title="", first_name="", last_name="",
                address=f"{rng.randint(1, 400)} {rng.choice(N.STREETS)}", city=city, region=region,
                post_code=post_code, country="New Zealand", postal_address="", postal_city="", postal_region="",
                postal_post_code="", postal_country="", phone=self.phone(), fax="",
                referral_source=rng.choice(N.REFERRALS), export_code="", tax_number=f"{rng.randint(10**8, 10**9 - 1)}",
                company_number="", business_number="", business_structure="",
                client_type=rng.choice(types), created=created, modified=modified,
                is_prospect=rng.random() < 0.03, is_archived=rng.random() < 0.05, is_deleted=rng.random() < 0.02,
            )
            slug = "".join(ch for ch in ascii_fold(name).lower() if ch.isalnum())[:20] or "client"
            if individual:
                client.first_name, client.last_name = name.split(" ", 1)
                client.title = rng.choice(("Mr", "Ms", "Mrs", "Dr", ""))
                client.email = f"{slug}@mail.example"
                client.date_of_birth = date(rng.randint(1945, 2000), rng.randint(1, 12), rng.randint(1, 28))
                client.business_structure = "Individual"
            else:
                client.email = f"accounts@{slug}.example"
                client.website = f"https://www.{slug}.example" if rng.random() < 0.6 else ""
                client.company_number = f"{rng.randint(100000, 9999999)}"
                client.business_number = f"94290{rng.randint(10**7, 10**8 - 1)}"
                client.business_structure = rng.choice(N.STRUCTURES)
            if rng.random() < 0.25:
                client.postal_address, client.postal_city = f"PO Box {rng.randint(10, 9999)}", city
                client.postal_region, client.postal_post_code, client.postal_country = region, post_code, "New Zealand"
            if rng.random() < 0.1:
                client.export_code = f"C{seq:05d}"
            client.account_manager = rng.choice(staff) if rng.random() < 0.7 else None
            client.job_manager = rng.choice(staff) if rng.random() < 0.5 else None
            for k in range(rng.choice((0, 1, 1, 2, 3)) if not individual else rng.choice((0, 0, 1))):
                first, last = self.person()
                contact = Contact(
                    uuid=self.uuid(), name=f"{first} {last}", is_primary=k == 0, is_deleted=k > 0 and rng.random() < 0.1,
                    salutation=first, addressee=f"{first} {last}", mobile=f"027 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                    email=f"{first.lower()[:1]}.{slug[:10]}{k}@mail.example", phone="", position=rng.choice(N.POSITIONS),
                )
                client.contacts.append(contact)
                t.contacts[contact.uuid] = contact
                t.contact_client[contact.uuid] = client
            if rng.random() < 0.3:
                noted = self.moment_between(created, self.now)
                client.notes.append(Note(title=rng.choice(("Engagement letter", "Background", "Billing & terms")),
                                         text=rng.choice(("Signed 2024 — renew annually", "Prefers email & phone calls",
                                                          "Pays by direct debit")),
                                         folder=rng.choice(("", "General")), date=noted,
                                         created_by=rng.choice(staff).name))
            t.clients[client.uuid] = client
        t.next_client_seq = self.spec.clients + 1
        live = [c for c in t.clients.values() if not c.is_deleted]
        for client in live:
            if rng.random() < 0.05:
                other = rng.choice(live)
                if other is not client:
                    client.billing_client = other

    def groups(self) -> None:
        rng, t = self.rng, self.t
        live = [c for c in t.clients.values() if not c.is_deleted]
        names: set[str] = set()
        for _ in range(max(2, self.spec.clients // 10)):
            name = (f"{rng.choice(N.LAST_NAMES)} Family" if rng.random() < 0.6
                    else f"{rng.choice(N.BUSINESS_PREFIXES)} Group")
            if name in names:
                continue
            names.add(name)
            group = Group(uuid=self.uuid(), name=name, taxable=rng.random() < 0.3)
            for client in rng.sample(live, min(len(live), rng.randint(1, 6))):
                t.add_group_member(group, client)
            t.groups[group.uuid] = group

    # -- jobs -------------------------------------------------------------------------------------

    def jobs(self) -> None:
        rng, t, today = self.rng, self.t, self.today
        staff = list(t.staff.values())
        task_types = list(t.task_types.values())
        by_name = {task.name: task for task in task_types}
        clients = [c for c in t.clients.values() if not c.is_deleted]
        active_clients = [c for c in clients if not c.is_archived]
        in_progress = [code for code, (_, done) in t.job_states.items() if not done]
        total = self.spec.active_jobs + self.spec.completed_jobs
        # Interleave completed and active jobs so numbers do not reveal the state.
        kinds = ["active"] * self.spec.active_jobs + ["completed"] * self.spec.completed_jobs
        rng.shuffle(kinds)
        custom = 0
        for n, kind in enumerate(kinds, start=1):
            jtype, pattern, preferred = rng.choice(N.JOB_TYPES)
            if kind == "completed":
                start = today - timedelta(days=rng.randint(45, 3 * 365))
                completed = min(start + timedelta(days=rng.randint(20, 240)), today - timedelta(days=1))
                due = start + timedelta(days=rng.randint(20, 200))
                client = rng.choice(clients)
            else:
                start = today + timedelta(days=rng.randint(-2 * 365, 120))
                due = start + timedelta(days=rng.randint(30, 400))
                completed = None
                client = rng.choice(active_clients)
            period = start + timedelta(days=rng.randint(0, 60))
            name = pattern.format(fy=f"{(period.year + (period.month > 3)) % 100:02d}", year=period.year,
                                  month=MONTHS[period.month - 1], q=f"Q{(period.month - 1) // 3 + 1}")
            number = None
            if rng.random() < 0.015:  # job.api/add can set custom numbers: no prefix assumptions
                custom += 1
                number = f"{jtype[:3].upper()}{period.year % 100:02d}-{custom:03d}"
            manager = rng.choice(staff) if rng.random() < 0.8 else None
            partner = rng.choice(staff) if rng.random() < 0.6 else None
            team = rng.sample(staff, min(len(staff), rng.randint(1, 4)))
            if manager is not None and manager not in team:
                team.append(manager)
            live_contacts = [c for c in client.contacts if not c.is_deleted]
            created_at = datetime.combine(start - timedelta(days=rng.randint(0, 30)), time(10, 0), UTC)
            created_at = min(created_at, self.now - timedelta(days=rng.randint(1, 60), seconds=rng.randint(0, DAY)))
            job = Job(
                uuid=self.uuid(), job_number=number or f"{t.job_prefix}{n:06d}", name=name,
                description="" if rng.random() < 0.4 else f"{jtype} for {client.name}",
                client_order_number="" if rng.random() < 0.9 else f"PO-{rng.randint(1000, 9999)}",
                state_code="COMPLETED" if completed else rng.choice(in_progress), job_type=jtype,
                budget=Decimal(rng.randrange(300, 25000, 50)).quantize(Decimal("0.01")),
                start_date=start, due_date=due, completed_date=completed, client=client,
                contact=rng.choice(live_contacts) if live_contacts and rng.random() < 0.5 else None,
                manager=manager, partner=partner, assigned=team, created=created_at,
            )
            job.times = []
            job.tasks = []
            self._job_tasks(job, preferred, by_name, task_types, start, due, completed)
            t.jobs[job.job_number] = job
            t.jobs_by_uuid[job.uuid] = job
        t.next_job_seq = total + 1

    def _job_tasks(self, job, preferred, by_name, task_types, start, due, completed) -> None:
        rng, t = self.rng, self.t
        count = rng.randint(2, 6)
        chosen = [by_name[p] for p in preferred if p in by_name][:count]
        pool = [tt for tt in task_types if tt not in chosen]
        chosen += rng.sample(pool, min(len(pool), count - len(chosen)))
        if rng.random() < 0.1:
            chosen.append(chosen[0])  # the same type twice, told apart by Label
        progress = 1.0 if completed else rng.random()
        labels: dict[str, int] = {}
        for task_type in chosen:
            labels[task_type.uuid] = labels.get(task_type.uuid, 0) + 1
            dated = rng.random() < 0.4
            task = JobTask(
                uuid=self.uuid(), job=job, task_type=task_type, name=task_type.name,
                label=f"Part {labels[task_type.uuid]}" if labels[task_type.uuid] > 1 else "",
                description="" if rng.random() < 0.6 else task_type.description,
                estimated_minutes=rng.randrange(30, 900, 30), actual_minutes=0,
                completed=rng.random() < progress, billable=task_type.name not in N.NON_BILLABLE_TASKS,
                folder=rng.choice(N.TASK_FOLDERS),
                start_date=start + timedelta(days=rng.randint(0, 20)) if dated else None,
                due_date=due - timedelta(days=rng.randint(0, 10)) if dated else None,
                assigned=[],
            )
            job.tasks.append(task)
            t.job_tasks[task.uuid] = task

    # -- time ---------------------------------------------------------------------------------------

    def times(self) -> None:
        """``spec.times`` entries over [today - 3y, today + 1y], each inside its job's active span."""
        rng, t, today = self.rng, self.t, self.today
        first_day, last_day = today - timedelta(days=3 * 365), today + timedelta(days=365)
        spans = []
        for job in t.jobs.values():
            lo = max(job.start_date, first_day)
            if job.completed_date is not None:
                hi = job.completed_date
            else:
                hi = min(max(job.due_date, today + timedelta(days=30)), last_day)
            if hi >= lo and job.tasks:
                spans.append((job, lo.toordinal(), hi.toordinal() - lo.toordinal() + 1))
        if not spans:
            return
        # Dates are uniform over the four years (a year's window holds about a quarter of the entries);
        # each date then gets a job active on it, found through 30-day buckets of overlapping jobs.
        first, total_days = first_day.toordinal(), (last_day - first_day).days + 1
        buckets: list[list] = [[] for _ in range(total_days // 30 + 1)]
        for span in spans:
            _job, lo, width = span
            for b in range(max(0, (lo - first) // 30), min(len(buckets) - 1, (lo + width - 1 - first) // 30) + 1):
                buckets[b].append(span)
        dates: dict[int, date] = {}
        teams = {job.uuid: (job.assigned or list(t.staff.values())) for job, _, _ in spans}
        invoice_uuid: dict[str, str] = {}
        now_epoch = epoch(self.now)
        notes = N.TIME_NOTES
        minutes_table = MINUTES
        random_ = rng.random
        getrandbits = rng.getrandbits
        index = t.index_time
        completed_before = {job.uuid: job.completed_date.toordinal() - 30 for job, _, _ in spans if job.completed_date}
        for _ in range(self.spec.times):
            ordinal = first + int(random_() * total_days)
            bucket = buckets[(ordinal - first) // 30] or spans
            for _try in range(12):
                job, lo, width = bucket[int(random_() * len(bucket))]
                if lo <= ordinal < lo + width:
                    break
            else:
                ordinal = lo + int(random_() * width)
            day = dates.get(ordinal)
            if day is None:
                day = dates[ordinal] = date.fromordinal(ordinal)
            tasks = job.tasks
            task = tasks[int(random_() * len(tasks))]
            team = teams[job.uuid]
            staff = team[int(random_() * len(team))]
            minutes = minutes_table[int(random_() * len(minutes_table))]
            roll = random_()
            start = end = None
            if roll < 0.01:
                minutes = -minutes  # corrections are recorded as negative time
            elif roll < 0.11:
                start = 480 + 15 * int(random_() * 32)
                if start + minutes >= 1440:
                    start = 1440 - minutes - 15
                end = start + minutes
            note = notes[int(random_() * len(notes))]
            billable = task.billable if random_() < 0.95 else not task.billable
            invoiced = ""
            cutoff = completed_before.get(job.uuid)
            if cutoff is not None and ordinal < cutoff and billable:
                invoiced = invoice_uuid.get(task.uuid)
                if invoiced is None:
                    invoiced = invoice_uuid[task.uuid] = uuid_from(rng)
            day_epoch = (ordinal - 719163) * DAY
            created = day_epoch + 28800 + int(random_() * 10 * DAY)
            if created > now_epoch:
                created = now_epoch - int(random_() * 3 * DAY) - 60
            bits = getrandbits(128)
            bits = (bits & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
            h = "%032x" % bits
            index(TimeEntry(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", job, task, staff, day, minutes,
                            note, billable, start, end, invoiced, created))
