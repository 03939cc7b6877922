// nmdose research PACS page (/nmdose/ui/research): the census and retrieval progress (polled), the backfill
// estimate, the studies per year (chart) and the year x description grid, new descriptions to accept, modality
// corrections, failed retrievals, forwarding not complete, imported folders. On the shared shell: nmdose.js's
// helpers and language (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var n = window.nmdose;
  var t = n.t, tv = n.tv, api = n.api, fmt = n.fmt, table = n.table, label = n.label, setLabel = n.setLabel,
    errorText = n.errorText, showError = n.showError, chart = n.chart, root = n.root, COLORS = n.colors;
  var STATES = ["retrieved", "pending", "failed", "not_target"];

  var I18N = {
    en: {
      "research.title": "Research PACS: studies per year", "research.progress": "Progress",
      "research.census": "Census", "research.retrieve": "Retrieval",
      "research.yearly": "Studies per year and exam type", "research.new": "New descriptions waiting for acceptance",
      "research.corrections": "Modality corrections", "research.failed": "Failed retrievals", "grid.year": "{year}",
      "grid.total_row": "Total", "col.total": "Total", "col.no_date": "No date",
      "grid.cell": "{studies} studies: {retrieved} retrieved, {pending} pending, {failed} failed, " +
        "{not_target} not targets",
      "grid.hint": "Cells: retrieved / studies (the studies alone when none is a retrieval target); hover for " +
        "every state. Click a column header to sort.",
      "grid.csv": "CSV (grid)", "grid.xlsx": "XLSX (grid)", "col.accept": "Select",
      "research.accept": "Accept selected", "research.accept_hint": "Accepted descriptions become retrieval " +
        "targets: their studies are queued by the next retrieval run (needs the config:write permission).",
      "accept.none": "Select at least one description.",
      "accept.done": "Accepted {n} description(s) by {by}; {studies} studies are now retrieval targets.",
      "accept.done_db": "Accepted {n} description(s) by {by}; {studies} studies are now retrieval targets. " +
        "The configuration file is read-only here: the acceptance is kept in the database.",
      "reason.majority": "The PACS lists {found} for this study, but most studies with this description " +
        "({agreeing} of {studies}) have {expected}: counted as {corrected}.",
      "reason.majority_tie": "The PACS lists {found} for this study; studies with this description are split " +
        "evenly ({agreeing} of {studies} have {expected}, chosen alphabetically): counted as {corrected}.",
      "reason.rule": "The PACS lists {found} for this study, but the modality rule \u201c{rule}\u201d says this " +
        "description is {expected}: counted as {corrected}.",
      "research.forward": "Forwarding to the dose PACS not complete", "prog.never": "not run yet",
      "prog.run.running": "running", "prog.run.done": "finished", "prog.run.failed": "failed",
      "prog.run.interrupted": "interrupted (the next run resumes)", "prog.days": "of the date range",
      "prog.studies": "studies", "prog.targets": "selected for retrieval", "prog.failed_queries": "failed queries",
      "prog.new_descriptions": "new descriptions", "prog.instances": "instances", "prog.state.done": "done",
      "prog.state.pending": "waiting", "prog.state.moving": "moving", "prog.state.verifying": "verifying",
      "prog.state.partial": "partial", "prog.state.failed": "failed", "research.estimate": "Backfill estimate",
      "est.pending": "studies pending", "est.time": "retrieval time", "est.ends": "ends",
      "est.beyond": "beyond 3 years", "est.failed": "failed", "est.none": "nothing pending",
      "research.imports": "Imported folders (drop folder)", "col.import_started": "Started",
      "col.import_folder": "Folder (hash)", "col.import_outcome": "Outcome", "col.import_files": "Files",
      "col.import_stored": "Stored", "col.import_skipped": "Skipped", "col.import_bad": "Bad files",
      "col.import_studies": "Studies", "col.import_mb": "MB", "col.import_seconds": "Seconds",
      "col.import_error": "Error", "state.retrieved": "retrieved", "state.pending": "pending",
      "state.failed": "failed", "state.not_target": "not a target", "col.modalities": "Modalities",
      "col.state": "State", "col.first": "First", "col.last": "Last", "col.found": "Found",
      "col.corrected": "Corrected", "col.uid": "StudyInstanceUID", "col.log": "Log", "col.stuck": "Stuck",
      "col.selected": "Selected", "col.forwarded": "Forwarded", "col.missing": "Missing"
    },
    ko: {
      "research.title": "연구 PACS: 연도별 검사 수", "research.progress": "진행 상황", "research.census": "전수 조사",
      "research.retrieve": "가져오기", "research.yearly": "연도 및 검사 종류별 검사 수", "research.new": "승인 대기 중인 새 검사명",
      "research.corrections": "모달리티 수정", "research.failed": "가져오기 실패", "grid.year": "{year}년", "grid.total_row": "합계",
      "col.total": "합계", "col.no_date": "날짜 없음",
      "grid.cell": "검사 {studies}건: 가져옴 {retrieved}, 대기 {pending}, 실패 {failed}, 대상 아님 {not_target}",
      "grid.hint": "칸: 가져온 검사 / 전체 검사 (가져오기 대상이 없으면 전체 검사 수만). 마우스를 올리면 상태별 " +
        "수가 보입니다. 열 제목을 누르면 정렬됩니다.",
      "grid.csv": "CSV (표)", "grid.xlsx": "XLSX (표)", "col.accept": "선택", "research.accept": "선택한 검사명 승인",
      "research.accept_hint": "승인한 검사명은 가져오기 대상이 되어 " +
        "다음 가져오기 실행 때 해당 검사를 가져옵니다 (config:write 권한 필요).",
      "accept.none": "검사명을 하나 이상 선택하세요.", "accept.done": "{by} 님이 검사명 {n}개를 승인했습니다. 이제 {studies}건의 검사가 가져오기 대상입니다.",
      "accept.done_db": "{by} 님이 검사명 {n}개를 승인했습니다. 이제 {studies}건의 검사가 가져오기 대상입니다. " +
        "이곳의 설정 파일은 읽기 전용이라 승인 내용은 데이터베이스에 저장되었습니다.",
      "reason.majority": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있지만, 같은 검사명의 검사 대부분" +
        "({studies}건 중 {agreeing}건)이 {expected}입니다: {corrected}(으)로 집계합니다.",
      "reason.majority_tie": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있습니다. 같은 검사명의 검사가 " +
        "고르게 나뉘어 ({studies}건 중 {agreeing}건이 {expected}, 알파벳 순으로 선택) {corrected}(으)로 집계합니다.",
      "reason.rule": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있지만, 모달리티 규칙 \u201c{rule}\u201d에 " +
        "따르면 이 검사명은 {expected}입니다: {corrected}(으)로 집계합니다.",
      "research.forward": "선량 PACS 전송 미완료", "prog.never": "아직 실행 안 함", "prog.run.running": "실행 중",
      "prog.run.done": "완료", "prog.run.failed": "실패", "prog.run.interrupted": "중단됨 (다음 실행에서 이어서 진행)",
      "prog.days": "날짜 범위 진행", "prog.studies": "검사", "prog.targets": "가져오기 대상", "prog.failed_queries": "실패한 조회",
      "prog.new_descriptions": "새 검사명", "prog.instances": "인스턴스", "prog.state.done": "완료", "prog.state.pending": "대기",
      "prog.state.moving": "이동 중", "prog.state.verifying": "확인 중", "prog.state.partial": "일부만",
      "prog.state.failed": "실패", "research.estimate": "백필 예상", "est.pending": "대기 중인 검사", "est.time": "가져오기 소요 시간",
      "est.ends": "완료 예상", "est.beyond": "3년 이후", "est.failed": "실패", "est.none": "대기 중인 검사 없음",
      "research.imports": "가져온 폴더 (드롭 폴더)", "col.import_started": "시작", "col.import_folder": "폴더 (해시)",
      "col.import_outcome": "결과", "col.import_files": "파일", "col.import_stored": "저장", "col.import_skipped": "건너뜀",
      "col.import_bad": "잘못된 파일", "col.import_studies": "검사", "col.import_mb": "크기 (MB)", "col.import_seconds": "초",
      "col.import_error": "오류", "state.retrieved": "가져오기 완료", "state.pending": "대기", "state.failed": "실패",
      "state.not_target": "대상 아님", "col.modalities": "모달리티", "col.state": "상태", "col.first": "최초 검사일",
      "col.last": "최근 검사일", "col.found": "확인된 모달리티", "col.corrected": "수정된 모달리티",
      "col.uid": "검사 UID (StudyInstanceUID)", "col.log": "로그", "col.stuck": "정체", "col.selected": "선택",
      "col.forwarded": "전송 완료", "col.missing": "누락"
    }
  };

  function research() {
    researchGrid();
    researchChart();
    newDescriptions();
    var accept = document.getElementById("accept-button");
    if (accept) accept.addEventListener("click", acceptSelected);
    api("research/corrections").then(function (d) {
      table("corrections-table", d.rows, [["description", "col.description"], ["modalities_found", "col.found"],
        ["modalities_corrected", "col.corrected"], ["correction_reason", "col.reason", reasonText],
        ["studies", "col.studies"]]);
    }).catch(function (e) { showError("corrections-table", e); });
    researchLists();
    n.onLang(function () {
      Object.keys(progress).forEach(function (id) { showProgress(id, progress[id][0], progress[id][1]); });
    });
  }

  // Studies per year by retrieval state (stacked bars; GET research/yearly), drawn again after an acceptance.
  function researchChart() {
    api("research/yearly").then(function (d) {
      var rows = d.rows;
      // Every year from the first to the last, an empty one too (a gap in the archive must show as a gap).
      var found = rows.map(function (r) { return r.year; }).filter(function (y) { return y !== null; });
      var years = [];
      for (var y = Math.min.apply(null, found); found.length && y <= Math.max.apply(null, found); y++) years.push(y);
      var c = chart("yearly-chart", {
        type: "bar",
        data: {labels: years.map(String), datasets: STATES.map(function (s, i) {
          return {label: t("state." + s), backgroundColor: COLORS[i], data: years.map(function (y) {
            return rows.filter(function (r) { return r.year === y && r.state === s; })
                       .reduce(function (n, r) { return n + r.studies; }, 0);
          })};
        })},
        options: {scales: {x: {stacked: true}, y: {stacked: true}}}
      });
      c.relabel = function () {
        c.data.datasets.forEach(function (ds, i) { ds.label = t("state." + STATES[i]); });
        c.update();
      };
    }).catch(function (e) { showError("yearly-table", e); });
  }

  // The lists below the grid: failed retrievals, forwarding not complete, imports; and the polled progress.
  function researchLists() {
    api("research/failed").then(function (d) {
      table("failed-table", d.rows, [["study_instance_uid", "col.uid"], ["study_date", "col.date"],
        ["description", "col.description"], ["state", "col.state"], ["attempts", "col.attempts"],
        ["last_error", "col.error"], ["log_path", "col.log"]]);
    }).catch(function (e) { showError("failed-table", e); });
    api("research/forward-incomplete").then(function (d) {
      table("forward-table", d.rows, [["study_instance_uid", "col.uid"], ["state", "col.state"],
        ["stuck", "col.stuck"], ["selected", "col.selected"], ["forwarded", "col.forwarded"],
        ["missing", "col.missing"], ["reason", "col.reason"]]);
    }).catch(function (e) { showError("forward-table", e); });
    api("research/imports").then(function (d) {
      table("imports-table", d.rows, [["started_at", "col.import_started"], ["folder", "col.import_folder"],
        ["outcome", "col.import_outcome"], ["files", "col.import_files"], ["stored_files", "col.import_stored"],
        ["skipped_files", "col.import_skipped"], ["bad_files", "col.import_bad"], ["studies", "col.import_studies"],
        ["bytes", "col.import_mb", function (r) { return r.bytes == null ? "" : (r.bytes / 1e6).toFixed(1); }],
        ["seconds", "col.import_seconds"], ["error", "col.import_error"]]);
    }).catch(function (e) { showError("imports-table", e); });
    pollStatus();
    pollEstimate();
  }

  // The year x description grid (GET research/grid): a row per description and modality set, a column per year
  // (empty years too), a cell "retrieved/studies" (the studies alone when none is a target) with every state in
  // its title, a total column and row; rows by total, descending; a click on a header sorts by that column.
  var grid = null, gridSort = {key: "total", desc: true};
  function researchGrid() {
    ["csv", "xlsx"].forEach(function (f) {
      var a = document.getElementById("grid-" + f);
      if (a) a.href = root + "api/research/grid?format=" + f;
    });
    api("research/grid").then(function (d) { grid = d; drawGrid(); })
      .catch(function (e) { showError("yearly-table", e); });
  }

  function gridCell(tr, c) {
    var td = tr.insertCell();
    td.className = "num";
    if (!c || !c.studies) return td;
    td.textContent = c.studies > c.not_target ? c.retrieved + "/" + c.studies : String(c.studies);
    td.setAttribute("data-i18n-title", "grid.cell");
    td.setAttribute("data-i18n-title-vars", JSON.stringify(c));
    td.title = tv("grid.cell", c);
    return td;
  }

  function gridValue(r, key) {
    if (key === "description") return r.description + "\u0000" + r.modalities;
    if (key === "total") return r.total.studies;
    if (key === "no_date") return r.no_date.studies;
    return r.cells[key] ? r.cells[key].studies : 0;
  }

  function drawGrid() {
    var el = document.getElementById("yearly-table");
    if (!el || !grid) return;
    var noDate = grid.totals.no_date.studies > 0;
    var cols = [["description", "col.description"], ["modalities", "col.modalities"]];
    grid.years.forEach(function (y) { cols.push([String(y), "grid.year", {year: y}]); });
    if (noDate) cols.push(["no_date", "col.no_date"]);
    cols.push(["total", "col.total"]);
    var rows = grid.rows.slice().sort(function (a, b) {
      var x = gridValue(a, gridSort.key), y = gridValue(b, gridSort.key);
      var c = x < y ? -1 : x > y ? 1 : 0;
      if (gridSort.desc) c = -c;
      return c || b.total.studies - a.total.studies || (a.description < b.description ? -1 : 1);
    });
    el.replaceChildren();
    var head = el.createTHead().insertRow();
    cols.forEach(function (c) {
      var th = document.createElement("th");
      setLabel(th, c[1], c[2]);
      if (c[0] !== "modalities") {
        th.className = "sortable";
        th.setAttribute("aria-sort", gridSort.key !== c[0] ? "none" : gridSort.desc ? "descending" : "ascending");
        th.tabIndex = 0;
        var sortBy = function () {
          gridSort = {key: c[0], desc: gridSort.key === c[0] ? !gridSort.desc : c[0] !== "description"};
          drawGrid();
        };
        th.addEventListener("click", sortBy);
        th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(); } });
      }
      head.appendChild(th);
    });
    var tb = el.createTBody();
    if (!rows.length) {
      var td = tb.insertRow().insertCell();
      td.colSpan = cols.length;
      setLabel(td, "empty");
    }
    function line(r, isTotal) {
      var tr = tb.insertRow();
      var name = tr.insertCell();
      if (isTotal) { setLabel(name, "grid.total_row"); tr.className = "total"; }
      else name.textContent = r.description;
      tr.insertCell().textContent = isTotal ? "" : r.modalities;
      grid.years.forEach(function (y) { gridCell(tr, r.cells[y]); });
      if (noDate) gridCell(tr, r.no_date);
      gridCell(tr, r.total);
    }
    rows.forEach(function (r) { line(r, false); });
    if (rows.length) line(grid.totals, true);
    el.setAttribute("data-rows", String(rows.length));
    el.removeAttribute("data-stale");
  }

  // New descriptions with a checkbox each; "Accept selected" POSTs them (config:write), then both lists refresh.
  function newDescriptions() {
    api("research/descriptions/new").then(function (d) {
      table("new-table", d.rows, [["select", "col.accept", function (r) {
        var box = document.createElement("input");
        box.type = "checkbox";
        box.className = "accept-box";
        box.value = r.description;
        box.setAttribute("aria-label", r.description);
        return box;
      }], ["description", "col.description"], ["studies", "col.studies"],
        ["modality_sets", "col.modalities"], ["first_date", "col.first"], ["last_date", "col.last"]]);
      var button = document.getElementById("accept-button");
      if (button) button.disabled = !d.rows.length;
    }).catch(function (e) { showError("new-table", e); });
  }

  function acceptSelected() {
    var out = document.getElementById("accept-result");
    var chosen = Array.prototype.map.call(document.querySelectorAll("#new-table .accept-box:checked"),
                                          function (b) { return b.value; });
    if (!chosen.length) { setLabel(out, "accept.none"); return; }
    var button = document.getElementById("accept-button");
    button.disabled = true;
    window.nmdoseFetch(root + "api/research/descriptions/accept", {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({descriptions: chosen})
    }).then(function (r) {
      return r.json().then(function (d) { if (!r.ok) throw new Error(d.error || r.statusText); return d; });
    }).then(function (d) {
      setLabel(out, d.config_error ? "accept.done_db" : "accept.done",
               {n: d.accepted.length, studies: d.studies_marked, by: d.by});
      if (d.config_error) out.title = d.config_error;
      newDescriptions();
      researchGrid();
      researchChart();
    }).catch(function (e) {
      out.replaceChildren(errorText(e));
      out.removeAttribute("data-i18n");
      button.disabled = false;
    });
  }

  // A modality correction's reason (the census's text read back by the API: reason.code) as a sentence.
  function mods(list) { return list && list.length ? list.join(" + ") : "–"; }
  function reasonText(r) {
    var why = r.reason;
    if (!why || why.code === "other") return fmt(r.correction_reason);
    var vars = {found: mods(why.found), expected: mods(why.expected), corrected: r.modalities_corrected
      ? String(r.modalities_corrected).split("\\").join(" + ") : "–"};
    if (why.code === "rule") { vars.rule = why.rule; return label("reason.rule", vars); }
    vars.agreeing = why.agreeing;
    vars.studies = why.studies;
    return label(why.tie ? "reason.majority_tie" : "reason.majority", vars);
  }

  // The census's and the retrieval's progress as sentences (not the API's key=value), in both languages.
  function censusText(d) {
    if (d.state === "never_run") return t("prog.never");
    var key = "prog.run." + d.state;
    var parts = [t(key) === key ? d.state : t(key)];
    if (d.progress !== undefined && d.progress !== null) parts.push(Math.round(d.progress * 100) + " % " + t("prog.days"));
    parts.push(t("prog.studies") + " " + (d.studies || 0));
    if (d.targets !== undefined) parts.push(t("prog.targets") + " " + d.targets);
    if (d.failed_queries) parts.push(t("prog.failed_queries") + " " + d.failed_queries);
    if (d.new_descriptions) parts.push(t("prog.new_descriptions") + " " + d.new_descriptions);
    return parts.join(" · ");
  }

  function retrieveText(d) {
    var by = d.by_state || {};
    var parts = [t("prog.studies") + " " + (d.studies || 0)];
    ["done", "pending", "moving", "verifying", "partial", "failed"].forEach(function (s) {
      if (by[s]) parts.push(t("prog.state." + s) + " " + by[s]);
    });
    if (d.instances_received) parts.push(t("prog.instances") + " " + d.instances_received);
    if (d.bytes_received) parts.push((d.bytes_received / 1e9).toFixed(2) + " GB");
    return parts.join(" · ");
  }

  // The last answers of the polls (element id -> [answer, its text]), written again in the new language on the
  // language toggle (nmdose.onLang) rather than at the next poll.
  var progress = {};
  function showProgress(id, d, text) {
    progress[id] = [d, text];
    var el = document.getElementById(id);
    if (el) el.textContent = text(d);
  }

  function pollStatus() {
    [["census/status", "census-status", censusText], ["retrieve/status", "retrieve-status", retrieveText]]
      .forEach(function (p) {
        window.nmdoseFetch(root + p[0], {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
          showProgress(p[1], d, p[2]);
        }).catch(function () {});
      });
    setTimeout(pollStatus, 5000);
  }

  // The backfill estimate (GET /retrieve/estimate), refreshed every 30 s while the research page is open.
  function pollEstimate() {
    window.nmdoseFetch(root + "retrieve/estimate", {credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.json() : Promise.reject(r.status);
    }).then(function (d) {
      showProgress("retrieve-estimate", d, estimateText);
    }).catch(function () {});
    setTimeout(pollEstimate, 30000);
  }

  function estimateText(d) {
    var text;
    if (!d.pending_studies) { text = t("est.none"); }
    else if (d.retrieval_seconds === null) { text = d.pending_studies + " " + t("est.pending") + " · " + (d.why_unknown || ""); }
    else {
      var h = d.retrieval_seconds / 3600;
      text = d.pending_studies + " " + t("est.pending") + " · " + t("est.time") + " " +
        (h >= 1 ? h.toFixed(1) + " h" : Math.round(d.retrieval_seconds / 60) + " min") + " · " + t("est.ends") + " " +
        (d.ends_at ? String(d.ends_at).slice(0, 16).replace("T", " ") : t("est.beyond"));
    }
    if (d.failed_studies) text += " · " + t("est.failed") + " " + d.failed_studies;
    return text;
  }

  n.register("research", I18N, research);
})();
