"""Per-protocol summary of the dose schema: N, median CTDIvol, median DLP, median activity (SQL percentiles)."""

from __future__ import annotations

from typing import Any

# Per study description: CTDIvol median over the CT events, DLP and activity medians over the studies.
_BY_DESCRIPTION = """
WITH ev AS (
    SELECT s.study_description AS protocol,
           count(e.ctdivol_mgy) AS n_events,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ctdivol_mgy) AS median_ctdivol_mgy
    FROM dose.study s JOIN dose.ct_event e USING (study_instance_uid)
    GROUP BY s.study_description
), st AS (
    SELECT study_description AS protocol, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ct_total_dlp_mgycm) AS median_dlp_mgycm,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY nm_total_activity_mbq) AS median_activity_mbq
    FROM dose.study GROUP BY study_description
)
SELECT st.protocol, st.n, coalesce(ev.n_events, 0), ev.median_ctdivol_mgy, st.median_dlp_mgycm,
       st.median_activity_mbq
FROM st LEFT JOIN ev ON ev.protocol IS NOT DISTINCT FROM st.protocol
ORDER BY st.protocol NULLS LAST
"""

# Per CT acquisition protocol: CTDIvol and DLP medians over the events (N = studies with that protocol).
_BY_ACQUISITION = """
SELECT acquisition_protocol, count(DISTINCT study_instance_uid), count(ctdivol_mgy),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ctdivol_mgy),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY dlp_mgycm), NULL::double precision
FROM dose.ct_event GROUP BY acquisition_protocol ORDER BY acquisition_protocol NULLS LAST
"""

COLUMNS = ("protocol", "n", "n_events", "median_ctdivol_mgy", "median_dlp_mgycm", "median_activity_mbq")


def protocol_summary(conn, *, by: str = "description") -> list[dict[str, Any]]:
    """Rows of the summary, one per protocol (study description, or CT acquisition protocol)."""
    sql = _BY_DESCRIPTION if by == "description" else _BY_ACQUISITION
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.rollback()
    out = []
    for row in rows:
        record = dict(zip(COLUMNS, row, strict=True))
        for key in COLUMNS[3:]:
            if record[key] is not None:
                record[key] = round(float(record[key]), 3)
        out.append(record)
    return out
