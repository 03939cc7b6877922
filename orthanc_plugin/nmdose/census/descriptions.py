"""StudyDescriptions found by the census, the ones missing from `target_descriptions`, and `census accept`.

Accepting records who and when in `rpacs.description_rule`, marks the description's studies as targets, and edits
``config/retrieve_options.yaml`` with ruamel.yaml round-trip (comments and order kept) when the file is writable
(`nmdose census accept` and the research page's POST /nmdose/api/research/descriptions/accept).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmdose.census import store
from nmdose.census.modalities import fmt
from nmdose.config import Config
from nmdose.errors import ConfigError, NmdoseError


def sync_config_targets(conn, cfg: Config) -> None:
    """Record the configured target descriptions in `rpacs.description_rule` (source 'config'). Caller commits."""
    with conn.cursor() as cur:
        for description in cfg.retrieve.target_descriptions:
            cur.execute(
                """INSERT INTO rpacs.description_rule (description, is_target, source)
                   VALUES (%s, true, 'config') ON CONFLICT (description) DO NOTHING""",
                (description,),
            )


def target_descriptions(conn, cfg: Config) -> set[str]:
    """Configured targets plus those accepted (even if this process loaded the configuration before)."""
    with conn.cursor() as cur:
        cur.execute("SELECT description FROM rpacs.description_rule WHERE is_target AND source = 'accepted'")
        accepted = {r[0] for r in cur.fetchall()}
    return set(cfg.retrieve.target_descriptions) | accepted


def list_descriptions(conn, cfg: Config, *, only_new: bool = False) -> list[dict[str, Any]]:
    """Every description in the census: count, first/last date, modality sets, target or new."""
    targets = target_descriptions(conn, cfg)
    with conn.cursor() as cur:
        # Counts from the tally of sql/007_web.sql (no scan of rpacs.study); first and last StudyDate of each
        # (description, modality set) by two probes of study_description_found_date_idx.
        cur.execute(
            """SELECT t.description, t.studies,
                      (SELECT min(s.study_date) FROM rpacs.study s
                        WHERE s.description = t.description AND s.modalities_found = t.modalities_found),
                      (SELECT max(s.study_date) FROM rpacs.study s
                        WHERE s.description = t.description AND s.modalities_found = t.modalities_found),
                      array_to_string(t.modalities_found, '\\') AS mods, t.corrected
                 FROM (SELECT description, modalities_found, sum(studies)::bigint AS studies,
                              coalesce(sum(studies) FILTER (WHERE modalities_corrected IS NOT NULL), 0)::bigint
                                  AS corrected
                         FROM rpacs.study_tally GROUP BY 1, 2 HAVING sum(studies) <> 0) t
                ORDER BY 1, 5"""
        )
        rows = cur.fetchall()
    out: dict[str, dict[str, Any]] = {}
    for description, n, first, last, mods, corrected in rows:
        d = out.setdefault(
            description,
            {
                "description": description,
                "studies": 0,
                "first_date": first,
                "last_date": last,
                "modality_sets": {},
                "corrected": 0,
                "target": description in targets,
                "new": description not in targets,
            },
        )
        d["studies"] += n
        d["first_date"] = (
            min(d["first_date"], first) if first and d["first_date"] else first or d["first_date"]
        )
        d["last_date"] = max(d["last_date"], last) if last and d["last_date"] else last or d["last_date"]
        # two found sets that print alike (e.g. one with a NULL element) count as one, as a GROUP BY of the text
        key = mods or fmt([])
        d["modality_sets"][key] = d["modality_sets"].get(key, 0) + n
        d["corrected"] += corrected
    result = [d for d in out.values() if d["new"] or not only_new]
    for d in result:
        for k in ("first_date", "last_date"):
            d[k] = d[k].isoformat() if d[k] else None
    return sorted(result, key=lambda d: (-d["studies"], d["description"]))


def add_to_yaml(path: Path, descriptions: Sequence[str]) -> list[str]:
    """Append descriptions to `target_descriptions` of a retrieve_options.yaml, keeping comments, order and
    quoting. Returns those actually added."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise ConfigError(f"{path}: cannot be read for editing ({exc})") from None
    seq = data.get("target_descriptions")
    if seq is None:
        seq = data["target_descriptions"] = CommentedSeq()
    added = [d for d in dict.fromkeys(descriptions) if d not in seq]
    seq.extend(added)
    if added:
        tmp = path.with_suffix(".yaml.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
        tmp.replace(path)
    return added


def accept(
    conn, cfg: Config, descriptions: Sequence[str], *, by: str, all_new: bool = False
) -> dict[str, Any]:
    """Make descriptions targets: record who/when in rpacs.description_rule, mark their studies (committed), then
    append them to retrieve_options.yaml; a file that cannot be edited is reported in `config_error`."""
    new = {d["description"] for d in list_descriptions(conn, cfg, only_new=True)}
    known = {d["description"] for d in list_descriptions(conn, cfg)}
    wanted = sorted(new) if all_new else list(dict.fromkeys(descriptions))
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise NmdoseError(
            f"not found by the census: {', '.join(repr(d) for d in unknown)} "
            "(see `nmdose census descriptions --new`)"
        )
    with conn.cursor() as cur:
        for description in wanted:
            cur.execute(
                """INSERT INTO rpacs.description_rule (description, is_target, source, added_by, added_at)
                   VALUES (%s, true, 'accepted', %s, now())
                   ON CONFLICT (description) DO UPDATE SET is_target = true, source = 'accepted',
                       added_by = EXCLUDED.added_by, added_at = now()
                   WHERE NOT rpacs.description_rule.is_target OR rpacs.description_rule.source <> 'config'""",
                (description, by),
            )
    marked = store.set_targets(conn, target_descriptions(conn, cfg) | set(wanted))
    conn.commit()
    store.log.info("accepted descriptions by %s: %s (%d studies now targets)", by, wanted, marked)
    # The database is what the census and the retrieval read (target_descriptions), so the acceptance holds once
    # committed; the configuration file follows when it can be written (a read-only mount, as docker-compose.yml
    # mounts config/, keeps it as it was: the answer says so, and a restart still knows the accepted ones).
    path = cfg.config_dir / "retrieve_options.yaml"
    added: list[str] = []
    config_error = None
    if wanted:
        try:
            added = add_to_yaml(path, wanted)
        except (OSError, ConfigError) as exc:
            config_error = f"{path} not edited: {exc}"
            store.log.warning("accepted descriptions recorded in the database only: %s", config_error)
    return {
        "accepted": wanted,
        "added_to_config": added,
        "config_error": config_error,
        "studies_marked": marked,
        "by": by,
    }
