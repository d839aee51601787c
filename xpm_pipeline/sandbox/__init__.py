"""XPM sandbox: a real HTTP server on loopback that speaks Xero Practice Manager API 3.1.

It reproduces XPM's paths, XML, identity flow, rate limits and quirks (xpm-api.md §9) so any XPM
client — ours or anyone's — can be tested without a Xero account. Its fidelity is a product feature:
where XPM's behaviour is unverified, the sandbox picks one documented behaviour and offers a switch.

Starting it
===========
Command line (prints exactly one line, then serves until SIGINT/SIGTERM, exit status 0)::

    xpm-pipeline sandbox serve [--host 127.0.0.1] [--port 8765] [--size small|medium|large] [--seed N]
        [--tenants K] [--daily-limit N] [--minute-limit N] [--state PATH]
        [--day-window rolling|fixed] [--time-filter date|created] [--allow-remote]
    XPM sandbox: http://127.0.0.1:8765 client_id=... client_secret=...

(also ``python -m xpm_pipeline.sandbox serve ...``). A bad flag prints one ``error: ...`` line on
stderr and exits 2; so does a ``--host`` other than loopback without ``--allow-remote`` (with it, a
``warning: ...`` line on stderr; a pipeline on another machine then sets ``XPM_IDENTITY_URL`` to the
sandbox's origin as well as ``XPM_API_BASE_URL``: identity follows the API's origin only on loopback). Python::

    from xpm_pipeline.clock import ManualClock
    from xpm_pipeline.sandbox import SandboxServer, SandboxConfig
    cfg = SandboxConfig(size="small", seed=1, tenants=2, daily_limit=10000, minute_limit=60,
                        concurrent_limit=5, app_minute_limit=10000, clock=ManualClock(),
                        day_window="rolling", time_filter="date", bad_tenant_status=403,
                        contact_edit_bumps_modified=False, state_path=None)
    with SandboxServer(cfg, host="127.0.0.1", port=0) as sb:      # or sb.start() / sb.stop()
        sb.base_url            # "http://127.0.0.1:PORT"; XPM is at sb.api_url = base_url + "/practicemanager/3.1/"
        sb.client_id, sb.client_secret, sb.tenant_ids
        sb.issue_token(tenant_id)   # {"access_token", "refresh_token", "expires_in", ...}: a consented connection
        sb.request_log         # list of dicts (see "Request log")
        sb.state               # the live model: sb.state.tenant(id).clients / .jobs / .times / ...
        sb.add_fault(path="time.api/add", kind="drop_after_commit")   # = POST /_sandbox/faults
        sb.advance(60)         # = POST /_sandbox/clock {"advance_seconds": 60}

All time (token expiry, rate windows, "today", creation stamps, the HTTP ``Date`` header) comes from
``SandboxConfig.clock``. Share one ``ManualClock`` between the sandbox and the client under test: the
client's ``clock.sleep(retry_after)`` then moves the sandbox's time as well, and nothing waits. The
admin clock endpoint also works with the default ``SystemClock`` (it keeps an offset).

One origin serves everything
============================
* XPM: ``/practicemanager/3.1/<resource>.api/...`` (below), and the same under ``/practicemanager/3.0/``
  (Xero's Postman collection calls 3.0; the sandbox answers both alike, with 3.1's UUIDs). Any other path
  under ``/practicemanager/`` gets XPM's XML error document with 404.
* Identity (Xero's own paths): ``GET /identity/connect/authorize``, ``POST /identity/connect/authorize/consent``,
  ``POST /connect/token``, ``POST /connect/revocation`` (form fields urlencoded or ``multipart/form-data``,
  as Xero accepts); connections: ``GET /connections``
  (optional ``?authEventId=``), ``DELETE /connections/{id}`` (204; 404 when unknown).
* Admin: ``/_sandbox/...`` (JSON, never under the XPM paths). It answers loopback clients only
  (127.0.0.0/8, ::1, ::ffff:127.x; others get 403) unless ``SandboxServer(..., allow_remote=True)``.

Identity
--------
One registered app (``client_id``/``client_secret`` derived from the seed). It accepts any loopback
``http://localhost|127.0.0.1|[::1]:PORT/PATH`` redirect URI plus ``SandboxConfig.redirect_uris``.

* ``GET /identity/connect/authorize?response_type=code&client_id&redirect_uri&scope&state``: an HTML
  consent page listing every practice with a form. Unknown client or unregistered redirect URI: 400
  HTML page. ``response_type`` other than ``code``: redirect with ``error=unsupported_response_type``.
  Scopes must include an XPM scope (``practicemanager``, ``practicemanager.read`` or a granular
  ``practicemanager.{client,job,staff,time}[.read]``) and nothing unknown (``offline_access``,
  ``openid``, ``profile``, ``email`` are known), else ``error=invalid_scope``.
* ``POST /identity/connect/authorize/consent`` (form): ``consent_id``, ``decision=allow|deny``,
  ``tenant`` (repeatable; absent = all practices) -> ``302 redirect_uri?code=...&scope=...&state=...``
  or ``?error=access_denied&state=...``.
* ``POST /connect/token`` (form; client auth by HTTP Basic or ``client_id``/``client_secret`` fields):
  ``grant_type=authorization_code`` (``code``, ``redirect_uri``; codes are single-use and live 300 s)
  or ``grant_type=refresh_token``. Answer ``{"access_token", "expires_in": 1800, "token_type": "Bearer",
  "scope", "refresh_token"}`` (refresh token only with ``offline_access``). Errors: 401
  ``{"error": "invalid_client"}``; 400 ``invalid_grant`` (bad/used/expired code, redirect URI
  mismatch, unknown/revoked/superseded-past-grace/idle-expired refresh token),
  ``unsupported_grant_type``.
* Refresh tokens **rotate**: every refresh returns a new one; the superseded one keeps working for
  30 minutes (``refresh_grace_seconds``), then ``invalid_grant``. A refresh token older than 60 days
  (``refresh_idle_days``; each use replaces it, so this is "unused for 60 days") is ``invalid_grant``.
* ``POST /connect/revocation`` (form ``token=<refresh token>``, client auth): revokes that consent —
  its refresh and access tokens die and its connections are removed. 200 (also for an unknown
  token, as RFC 7009 says); 401 ``invalid_client`` for bad client credentials.
* Connections follow Xero: one per app x practice; a consent creates or refreshes them (the
  connection keeps its id, ``authEventId`` becomes the new consent's). ``GET /connections`` lists the
  app's connections as ``[{id, authEventId, tenantId, tenantType: "PRACTICEMANAGER", tenantName,
  createdDateUtc, updatedDateUtc}]``. An access token reaches every practice the app is connected to.

XPM calls: authentication, tenant, scope
----------------------------------------
* Missing, unknown, revoked or expired Bearer token (1800 s after issue): **401** with
  ``WWW-Authenticate: Bearer error="invalid_token"``.
* ``Xero-Tenant-Id`` missing, unknown, or not connected: ``bad_tenant_status`` (default **403**).
  The header is case-insensitive.
* Scope: writes need ``practicemanager`` (or ``practicemanager.<family>``); reads also accept
  ``practicemanager.read`` / ``practicemanager.<family>.read``; ``task.api`` needs a broad scope.
  Otherwise 403 ``insufficient_scope``.
* These gateway answers (and 429) carry a JSON problem body like Xero's gateway
  (``{"Type", "Title", "Status", "Detail", ...}``); XPM's own answers are XML.

Rate limits
===========
Per tenant: ``concurrent_limit`` (5) calls in flight, ``minute_limit`` (60) in any sliding 60 s,
``daily_limit`` (10,000; Xero documents 5,000 — pass ``--daily-limit 5000``) per rolling 24 h
(``day_window="rolling"``) or per UTC calendar day (``"fixed"``). Per app: ``app_minute_limit``
(10,000) in any 60 s across tenants.

* **Every** XPM answer (OK, ERROR, 400, 401, bad tenant, 429, faults) carries ``X-DayLimit-Remaining``,
  ``X-MinLimit-Remaining``, ``X-AppMinLimit-Remaining`` (after counting the call when it counts).
* **What counts**: each call that passes authentication, the tenant and scope checks and is admitted,
  whatever happens next (ERROR answers, unknown endpoints, injected faults of the "admitted" stage).
  **Not counted**: 429s (so retrying after ``Retry-After`` succeeds), 401s, bad-tenant and scope
  refusals, and faults of the "arrival" stage (``reset``, ``expired_token``, ``rate_limit``).
* Breach: **429** with ``X-Rate-Limit-Problem`` (``minute``, ``day``, ``concurrent``, ``appminute``) and
  ``Retry-After`` = whole seconds (rounded up, >= 1) until the call would be admitted: minute/appminute
  -> until the oldest call leaves the 60 s window; day rolling -> until the oldest call leaves the
  24 h window; day fixed -> until the next UTC midnight; concurrent -> 1. When several limits are
  exceeded, the one with the longest wait is reported.

XML
===
``Content-Type: text/xml; charset=utf-8``; success ``<Response api-method="List"><Status>OK</Status>...``
(the legacy ``api-method`` attribute is reproduced: clients must ignore root attributes). Element
names, nesting and order follow xpm-api §6 (tables in ``render.SCHEMAS``); booleans are
``true``/``false`` on jobs, tasks and time, ``Yes``/``No`` on client ``IsProspect/IsArchived/IsDeleted``,
contact ``IsPrimary/IsDeleted`` and group ``Taxable``. Empty values are self-closing (``<Website />``),
an empty list is ``<Contacts />``, a one-item list keeps its wrapper; optional blocks are omitted when
unset (job ``CompletedDate``, ``Contact``, ``Manager``, ``Partner``; task ``StartDate``/``DueDate``;
time ``Start``/``End`` unless entered as a range). Dates are ``yyyy-MM-ddT00:00:00``; client
``DateOfBirth`` is date-only (``yyyy-MM-dd``) on ``client.api/get`` (and write answers). Tax numbers
are masked (``******789``). ``&``, ``<``, ``>`` are escaped; text is UTF-8.

Shapes chosen where XPM's docs are silent:

* ``POST``/``PUT job.api/task`` -> ``<Response><Status>OK</Status><ID>{task-on-job UUID}</ID></Response>``.
* ``job.api/task/{uuid}/complete|reopen``, ``job.api/delete``, ``time.api/delete/{uuid}`` ->
  ``<Response><Status>OK</Status></Response>``.
* ``client.api/paged-list`` -> ``<Clients>...</Clients><Pagination><Links><First>{token}</First>
  <Next>{token}</Next></Links></Pagination>``; the link texts are bare ``pageToken`` values (opaque);
  ``<Next />`` is empty on the last page.
* ``WebUrl`` (before the entity) on ``client.api/get`` and ``job.api/get``.
* Writes answer: ``time.api/add|update`` -> ``<Time>``; ``job.api/add|update|state|assign`` -> detailed
  ``<Job>``; ``client.api/add|update`` -> detailed ``<Client>``.

Errors: one rule (``errors.py``)
--------------------------------
``<Response><Status>ERROR</Status><ErrorDescription>...</ErrorDescription></Response>`` with:

* **400** — the request is malformed: body not XML, DOCTYPE/ENTITY present, wrong root element,
  required element missing, bad value format (dates ``YYYYMMDD``, times ``HH:MM``, integers, Yes/No,
  true/false), ``from``/``to`` missing or bad, ``to`` before ``from``, range over 365 days
  (``job.api/list``, ``time.api/list``, ``time.api/staff``, and ``time.api/job`` when given), bad
  ``pageSize`` (1-500) or ``pageToken``, bad ``modifiedsince``.
* **200** + ERROR — an ID in the path or body names nothing (``Unable to find job J009999``), reads and
  writes alike (including a repeated delete).
* **500** — understood but refused: unknown job state code, ``End`` not after ``Start``, a task that is
  not on the job, a job number already in use, a task with time deleted (admin).
* **409** — ``client.api/add``/``update`` would give two live clients the same name.
* 404 unknown ``*.api`` path, 405 wrong method (both ERROR documents).

XPM endpoints and semantics
===========================
Reads: ``client.api/list`` (``detailed=true``; ``modifiedsince=yyyy-MM-ddTHH:mm:ss`` UTC, inclusive;
archived and deleted clients included, flagged ``Yes``), ``client.api/paged-list`` (``pageSize``,
``pageToken``; live clients only, creation order, no detail), ``client.api/get/{uuid}``,
``client.api/search?query=`` (case-insensitive substring of the name; deleted excluded),
``clientgroup.api/list``, ``clientgroup.api/get/{uuid}`` (members ``<Clients><Client><UUID/><Name/>``),
``staff.api/list``, ``staff.api/get/{uuid}``, ``task.api/list``, ``task.api/get/{uuid}``,
``job.api/current`` (``detailed=true`` adds ``Tasks``, ``Milestones``, ``Notes``; completed and deleted
jobs are absent), ``job.api/list?from&to[&detailed]`` (jobs *created* in the range, completed ones
included), ``job.api/get/{number}``, ``job.api/tasks`` (current jobs with tasks filtered by
``complete=true|false``, ``due`` = due on or before, ``start`` = starting on or after; jobs without a
matching task are left out), ``time.api/list?from&to``, ``time.api/job/{number}[?from&to]``,
``time.api/staff/{uuid}?from&to``, ``time.api/get/{uuid}``. Query parameter names are case-insensitive.

Writes: ``client.api/add`` (POST ``<Client>``, ``<Contacts>`` allowed), ``client.api/update`` (PUT,
``<UUID>`` + fields; ``<Contacts>`` ignored), ``job.api/add`` (POST; ``ClientUUID``, ``ContactUUID``,
``CategoryUUID``, optional custom ``<ID>``), ``job.api/update`` (PUT; ``ClientNumber`` = client UUID,
``CategoryID``), ``job.api/state`` (PUT), ``job.api/assign`` (PUT; ``add``/``remove`` with ``uuid`` and
optional ``task-uuid``, ``add-manager``, ``add-partner``, ``remove-manager``, ``remove-partner``),
``job.api/delete`` (POST ``<Job><ID/></Job>``), ``job.api/task`` (POST add: ``Job``, ``TaskUUID`` of the
task list, ``EstimatedMinutes`` required; PUT update by ``<UUID>`` — ``<uuid>`` also accepted),
``job.api/task/{uuid}/complete|reopen`` (PUT), ``time.api/add`` (POST ``<Timesheet>``),
``time.api/update`` (PUT, + ``<UUID>``), ``time.api/delete/{uuid}`` (DELETE).

* Bodies are one bare element, parsed with DTDs, entities and network off; any DOCTYPE is a 400.
* An omitted element leaves the field unchanged; an empty element clears it.
* Read/write names differ as in XPM: ``<WebSite>`` in, ``<Website>`` out; ``<StaffUUID>`` in,
  ``<Staff><UUID>`` out; job add takes ``CategoryUUID``, update ``CategoryID``.
* Job states: written as interface codes, read as display names, per tenant. Codes: ``PLANNED``
  (Planned), ``INPROGRESS`` (In Progress; "Work in Progress" in every second practice: tenant index 1, 3, ...),
  ``ONHOLD`` (On Hold), ``WAITINGONCLIENT`` (Waiting on Client), ``REVIEW`` (Ready for Review),
  ``COMPLETED`` (Completed: sets ``CompletedDate`` to today and removes the job from
  ``job.api/current``; any other state clears it). ``GET /_sandbox/tenants/{id}`` shows the map.
* Jobs are addressed by job number (``<ID>``); numbers are ``<prefix><6 digits>`` with a per-tenant
  prefix (``J``, ``J``, ``JOB``, ``W``, ...) and ~1.5% custom numbers (``AUD25-004``); never assume ``J``.
* Time entries: ``<TaskUUID>`` in a write is the task-on-job UUID; a task-list UUID is also accepted
  when exactly one task of that type is on the job (the answer shows the task-on-job UUID).
  ``Minutes`` (may be negative) or ``Start``+``End`` (then ``Minutes`` = the difference and
  ``Start``/``End`` are shown); Billable defaults to the task's. Each add changes the task's
  ``ActualMinutes``. Deleted time vanishes (no flag). Time and jobs keep a hidden creation time.
* ``time_filter``: ``"date"`` (default) — ``time.api/list`` selects by ``<Date>``; ``"created"`` — by the
  hidden creation time (UTC date). ``time.api/staff`` and ``time.api/job`` always use ``<Date>``.
* Only clients have a modified time: client edits (API or admin) bump it; contact edits do not unless
  ``contact_edit_bumps_modified=True``.
* Deleting a job removes its tasks and time entries too (XPM has no deleted flag for either).

Admin interface (JSON)
======================
Object JSON uses the warehouse column names of ``xpm_pipeline.entities`` (``uuid``, ``job_number``,
``entry_date``, ``minutes``, ``staff_uuid``, ...) with ints, booleans, ``YYYY-MM-DD`` dates, money as a
string and empty values as ``null``; jobs carry ``tasks``, clients ``contacts``, groups ``members``.
Request bodies use the same keys; unknown keys are a 400. Errors: ``{"error": "..."}`` with 400 (bad
input), 404 (unknown tenant/object/endpoint), 405, 409 (refused by a rule). Admin calls are not
rate-limited, not logged and need no token.

Endpoint                                          Body -> response
--------------------------------------------------------------------------------------------------------
GET    /_sandbox/                                  -> {"endpoints": [...]}
GET    /_sandbox/tenants                           -> [{"tenant_id", "name", "size"}]
GET    /_sandbox/tenants/{tid}                     -> {seed, job_number_prefix, job_states, counts, connected}
POST   /_sandbox/tenants/{tid}/token               optional {"scope": "practicemanager offline_access"}
                                                   -> {"access_token", "refresh_token", "expires_in", ...}
GET    /_sandbox/clock                             -> {"now": ISO8601}
POST   /_sandbox/clock                             {"advance_seconds": N} or {"now": ISO8601} -> {"now"}
GET    /_sandbox/log[?tenant=ID]                   -> [request log entries]
DELETE /_sandbox/log                               -> {"cleared": N}
GET    /_sandbox/limits                            -> {"config": {...}, "usage": {tenant: {minute, day, in_flight}}}
DELETE /_sandbox/limits                            -> {"reset": true}   (forgets every counted call)
POST   /_sandbox/faults                            fault spec (see "Faults") -> 201 {"id", ...spec, seen, fired}
GET    /_sandbox/faults                            -> [{"id", "path", "kind", ..., "seen", "fired", "remaining"}]
DELETE /_sandbox/faults                            -> {"cleared": N};  DELETE /_sandbox/faults/{id} -> {"removed"}
POST   /_sandbox/state/save                        -> {"saved": path}   (409 without state_path)

Out-of-band edits ("a person changed this in XPM"), each answering the changed object's JSON:

POST   /_sandbox/tenants/{tid}/time                {job_number, task_uuid, staff_uuid, entry_date,
                                                   minutes | start_time+end_time, note?, billable?}
GET    /_sandbox/tenants/{tid}/time/{uuid}
PATCH  /_sandbox/tenants/{tid}/time/{uuid}         any of the time fields (job_number needs task_uuid)
DELETE /_sandbox/tenants/{tid}/time/{uuid}         -> the deleted entry
POST   /_sandbox/tenants/{tid}/staff               {name, email?, phone?, mobile?, address?, payroll_code?}
PATCH  /_sandbox/tenants/{tid}/staff/{uuid}        the same fields
POST   /_sandbox/tenants/{tid}/jobs                {name, client_uuid, description?, start_date?, due_date?,
                                                   budget?, contact_uuid?, manager_uuid?, partner_uuid?,
                                                   client_order_number?, job_type?, job_number? (custom),
                                                   state? (code, default PLANNED), tasks?: [task bodies]}
GET    /_sandbox/tenants/{tid}/jobs/{number}
PATCH  /_sandbox/tenants/{tid}/jobs/{number}       job fields (as above, plus category) and state (code)
POST   /_sandbox/tenants/{tid}/jobs/{number}/complete        -> the job, Completed (leaves job.api/current)
DELETE /_sandbox/tenants/{tid}/jobs/{number}       -> the deleted job (its tasks and time vanish too)
POST   /_sandbox/tenants/{tid}/jobs/{number}/tasks {task_uuid (task list), label?, description?,
                                                   estimated_minutes?, start_date?, due_date?, billable?,
                                                   completed?, folder?, name?}
PATCH  /_sandbox/tenants/{tid}/jobs/{number}/tasks/{uuid}    task fields
DELETE /_sandbox/tenants/{tid}/jobs/{number}/tasks/{uuid}    -> the deleted task (409 when time uses it)
GET    /_sandbox/tenants/{tid}/clients/{uuid}      -> client with contacts
PATCH  /_sandbox/tenants/{tid}/clients/{uuid}      client fields (name, email, phone, website, is_archived,
                                                   is_deleted, tax_number, account_manager_uuid, ...);
                                                   bumps the client's modified time
POST   /_sandbox/tenants/{tid}/clients/{uuid}/contacts          {name, is_primary?, email?, mobile?, ...}
PATCH  /_sandbox/tenants/{tid}/clients/{uuid}/contacts/{cuuid}  contact fields incl. is_deleted
                                                   (contact edits bump the client only with the switch)
POST   /_sandbox/tenants/{tid}/groups/{uuid}/members            {"client_uuid": "..."} -> group with members

Faults
======
``POST /_sandbox/faults`` ``{"path", "kind", "method"?, "tenant"?, "count"?: 1, "after"?: 0, ...params}``.
``path`` is a substring, or a glob when it holds ``*?[``, of the request path — XPM paths without the
base (``time.api/add``), identity paths without the leading slash (``connect/token``, ``connections``).
The fault skips the first ``after`` matching calls, then fires on the next ``count``. Stages: ``reset``,
``expired_token``, ``rate_limit`` and every fault on identity paths are checked on arrival; all other
kinds only for XPM calls that were admitted (authenticated, right tenant, within limits: counted).

drop_after_commit  mode=close|reset|hang (close), seconds (30, hang only): run the call (writes commit),
                   then close the connection (FIN), reset it (RST), or stay silent for ``seconds`` and
                   close: the client gets no answer (or times out)
reset              RST at once: nothing applied, nothing counted
latency            seconds (1.0): a real sleep while holding a concurrency slot, then the normal answer
status             status (500; any 4xx/5xx, e.g. 503), message: that status + ERROR body; nothing applied
error_200          message: HTTP 200 + ERROR body; nothing applied
truncated          fraction (0.5), mode=body|connection (body): the real answer cut part-way, either as
                   a complete HTTP message holding cut XML, or with the full Content-Length and the
                   connection closed early
malformed          the real answer with a stray "&<" in the middle (invalid XML)
doctype            entity=internal|external (internal): the real answer behind a DOCTYPE that declares
                   an entity (external: SYSTEM "file:///etc/hostname"), used as <Injected>&sandbox;</Injected>
oversized          bytes (64 MiB): the real answer with a <Padding> element of that many bytes
rate_limit         retry_after (60), problem (minute): 429 with those headers, not counted
expired_token      401 with WWW-Authenticate invalid_token, not counted
invalid_grant      token endpoint: 400 {"error": "invalid_grant"}, nothing changed
lost_refresh       mode=close|reset (close), token endpoint: the rotation is committed (the old refresh
                   token enters its grace period, a new one exists), then the answer is dropped
lie_missing_list   HTTP 200 <Status>OK</Status> without the list element (``<Response><Status>OK</Status>
                   </Response>``); on a get (``clientgroup.api/get``, ``job.api/get``), without the entity element
lie_empty_list     the list element present and empty (``<Jobs/>``, ``<StaffList/>``, ``<Times/>``)
lie_cut            fraction (0.1): only the first ceil(n * fraction) items of the list
lie_duplicate      every item twice, each copy right after its original
lie_other_tenant   source_tenant (optional): the list as another practice of the sandbox answers the same
                   call: ``source_tenant``'s, else the first other tenant whose list has items, else the
                   first other tenant's (empty) list; refused on a one-tenant sandbox

The lies are rewrites of the real answer (the call runs first) and apply to any OK answer holding a
registry entity (``xpm_pipeline.entities``): its list element (``<Clients>``, ``<Groups>``, ``<StaffList>``,
``<TaskList>``, ``<Jobs>``, ``<Times>``) on ``client.api/list``, ``clientgroup.api/list``, ``staff.api/list``,
``task.api/list``, ``job.api/current``, ``job.api/list``, ``time.api/list``, ...; on a get, the entity's nested
lists (group members, job tasks, client contacts) or, without any (staff, task, time), the entity element
itself as a one-item list (empty then removes it, cut keeps it, duplicate repeats it); other_tenant on a
get answers another tenant's first entity of that kind. An ERROR answer is sent as it is.

The output faults (truncated, malformed, doctype, oversized) run the call first, so writes commit.
On identity paths ``status`` answers JSON ``server_error``/``temporarily_unavailable``, ``error_200``
a JSON error body, ``truncated``/``malformed`` mangle the JSON answer, ``drop_after_commit`` acts as
``lost_refresh`` (both only on ``connect/token``); ``doctype``/``oversized`` do not apply there (normal
answer). Faulted requests are marked in the log.

Request log
===========
``sb.request_log`` / ``GET /_sandbox/log``: one dict per XPM, identity or connections request (admin
calls are not logged), in arrival order: ``seq``, ``at`` (sandbox clock, ISO), ``method``, ``path``
(full path), ``query`` (raw), ``tenant_id`` (lower-cased header or None), ``status`` (None when no
answer was sent), ``fault`` (kind or None), ``bytes`` (body bytes sent), ``counted`` (counted against
the limits). Capped at ``request_log_limit`` (200,000) entries, oldest dropped.

Data and state
==============
Seeded and deterministic: the same seed, tenant count, size and clock date give byte-identical
answers (new UUIDs of writes come from a seeded stream too). Sizes (per tenant): small 40 clients /
25 active + 15 completed jobs / 6 staff / 15 task-list tasks / 2,000 time entries; medium 500 / 300 +
220 / 30 / 30 / 30,000; large 5,000 / 3,000 + 2,200 / 150 / 60 / 300,000 (starts in ~3 s). Jobs have
2-6 tasks; time spreads evenly from 3 years before to 1 year after the clock's today (a 1-year
window on large is ~75,000 entries, served in well under a second); ~1% negative minutes, ~10%
entered as Start/End; names carry ``&``, apostrophes and non-ASCII letters. Each extra tenant has
its own seed stream and practice name; tenant 0 is the same whatever ``tenants`` is.

``state_path``: loaded on start when the file exists (it wins over size/seed), saved on stop and by
``POST /_sandbox/state/save``. It is a pickle of the model and identity state (app credentials,
consents, tokens, connections) — the sandbox's own format; load only files you wrote. Limits
counters, faults and the request log are not saved.

Not reproduced: JSON answers behind ``Xero-Features: practice-strict-content-type``,
``client.api/contacts``, ``jobstate.api/list``, invoices, quotes, costs, custom fields.
"""

from xpm_pipeline.sandbox.config import SandboxConfig
from xpm_pipeline.sandbox.server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer"]
