"""Migration 25: the analyst views re-created for people at psql and sqlite3 prompts.

``hours`` in ``v_timesheets_enriched`` is rounded to 2 places (sums read 82.00 instead of
81.99999999999999999999), the view gains ``tenant_name``, and on PostgreSQL every view and view
column gets a comment (``view_docs``). Warehouses created earlier have the old views; this brings them
along (re-creating is harmless where they are already current).
"""

from __future__ import annotations

from sqlalchemy import Connection

from xpm_pipeline.warehouse.migrate import migration
from xpm_pipeline.warehouse.views import ALL_VIEWS, create_views

VERSION = 25
NAME = "analyst views: hours to 2 places, tenant name, comments on every view and column"


@migration(VERSION, NAME)
def recreate_views(conn: Connection) -> None:
    create_views(conn, ALL_VIEWS)
