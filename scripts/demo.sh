#!/usr/bin/env bash
# `make demo`: the whole pipeline on the local embedded stack, with synthetic data only.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077  # everything the demo writes under var/ (the TLS demo's configuration copy included) stays private
N=.venv/bin/nmdose
[ -f config/.env ] || { cp config/.env.example config/.env; echo "demo: created config/.env from config/.env.example"; }

# NMDOSE_DEMO_TLS=1: the same demo with DICOM TLS on every node (a copy of config/ with `tls: true` on the local
# nodes, and a local CA from `nmdose certs init`; docs/security.md). `make stop` stops it as usual.
if [ "${NMDOSE_DEMO_TLS:-0}" = 1 ]; then
  TLS_CFG=var/demo-tls/config
  .venv/bin/python - "$TLS_CFG" <<'PY'
import shutil, sys
from pathlib import Path
import yaml
dest = Path(sys.argv[1]); dest.mkdir(parents=True, exist_ok=True)
for f in [*Path("config").glob("*.yaml"), Path("config/.env")]:
    shutil.copy(f, dest / f.name)
net = yaml.safe_load((dest / "dicom_network_entities.yaml").read_text())
for node in net["nodes"].values():
    node["tls"] = node["tls"] or bool(node.get("local"))
(dest / "dicom_network_entities.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
sch = yaml.safe_load((dest / "schema_definitions.yaml").read_text())
sch["migrations_dir"] = str(Path("sql").resolve())
(dest / "schema_definitions.yaml").write_text(yaml.safe_dump(sch, sort_keys=False))
PY
  N="$N --config-dir $TLS_CFG --var-dir var"
  echo "== 0. DICOM TLS on every local node: certificates (local CA)"
  $N certs init
fi

echo "== 1. local stack (PostgreSQL, simulation PACS, research PACS + nmdose plugin, dose PACS stand-in, pseudoPACS)"
$N stack up

echo "== 1b. dose alerts: a local SMTP sink (loopback, STARTTLS + AUTH; stops after 1 h) and a rule e-mailing the"
echo "       scanners' own dose-check alerts (TID 10015) as dose objects arrive (docs/alerts.md)"
mkdir -p var/alerts && (nohup $N alerts sink --for 3600 >var/alerts/sink.log 2>&1 &)
$N alerts rule '{"name": "demo: scanner dose check", "kind": "dose_check", "email_to": ["physics@localhost"]}'

echo "== 2. simulated clinical PACS (synthetic studies, seed 42)"
$N simulate --studies "${DEMO_STUDIES:-200}" --years 10 --seed 42

echo "== 3. C-ECHO of every active node"
$N echo

echo "== 4. research PACS plugin health"
$N health

echo "== 5. census of the source PACS"
$N census run

echo "== 6. retrieval of the target studies into the research PACS"
$N retrieve run

echo "== 7. forwarding of dose objects + one image per series to the dose PACS (on stable study)"
$N forward wait --timeout 600
$N forward status

if $N dose --help 2>/dev/null | grep -q summary; then
  echo "== 8. dose extraction on the dose PACS"
  $N dose summary || true
fi

echo "== 8b. standard names: one name per examination however each scanner spells it (docs/standard_names.md)"
$N names import config/standard_names.example.yaml
$N names suggest --limit 5 || true

echo "== 9. a research project of the retrieved PET-CT Whole Body studies (docs/projects.md)"
$N project create demo-petct --description "demo: retrieved PET-CT Whole Body FDG studies"
$N project add demo-petct --description "PET-CT Whole Body" --state done || true

echo "== 9b. a pseudonymised copy of the project into the pseudoPACS (docs/pseudonymise.md)"
$N pseudonymise --project demo-petct | tail -3 || true
echo "   $($N pseudonymise --project demo-petct --list | grep -c ': done,') studies copied (nmdose pseudonymise --project demo-petct --list)"

echo "== 10. dose alerts e-mailed to the local SMTP sink (var/alerts/mail/*.eml)"
$N alerts evaluate  # studies stored before the rule existed (a demo run again)
for _ in $(seq 1 30); do ls var/alerts/mail/*.eml >/dev/null 2>&1 && break; sleep 1; done
$N alerts list --state all --limit 5 || true
grep -h "^Subject:" var/alerts/mail/*.eml 2>/dev/null | head -5 || echo "   (no e-mail: see var/alerts/sink.log and the dose worker's log)"

HTTP=$($N config check --json | .venv/bin/python -c 'import json,sys; n=json.load(sys.stdin)["nodes"]["researchPACS"]; print("http://%s:%s" % (n["host"], n["http_port"]))')
echo "== pages (research PACS):"
echo "   $HTTP/nmdose/ui/research   studies per year and exam type, corrections, retrieval state"
echo "   $HTTP/nmdose/ui/dose       dose per protocol (CTDIvol, DLP, activity), filters, CSV export"
echo "   $HTTP/nmdose/ui/names      standard names: rules, suggestions with counts, CSV/YAML import and export"
echo "   $HTTP/nmdose/ui/scanners   scanners: display names, merges, scanners side by side"
echo "   $HTTP/nmdose/ui/report     reference-level comparison, trends, histograms, workload, annual report"
echo "   $HTTP/nmdose/ui/patients   patient cumulative effective dose (pseudonyms), timelines"
echo "   $HTTP/nmdose/ui/project/demo-petct   research project: its studies, viewer/ZIP/dose links, upload"
echo "   $HTTP/nmdose/ui/alerts     dose alerts: acknowledge, rules"
echo "   $HTTP/app/explorer.html    Orthanc Explorer (nmdose button)"
PSEUDO=$($N config check --json | .venv/bin/python -c 'import json,sys; n=json.load(sys.stdin)["nodes"].get("pseudoPACS") or {}; print("http://%s:%s" % (n.get("host"), n.get("http_port")))')
echo "   $PSEUDO/app/explorer.html    the pseudoPACS: pseudonymised copies (loopback only)"
echo "   $HTTP/nmdose/viewer/        OHIF viewer: the study list; a study: viewer?StudyInstanceUIDs=<uid> (docs/viewer.md)"
echo "== demo done. Stop everything with: make stop"
