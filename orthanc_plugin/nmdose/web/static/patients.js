// nmdose patient cumulative dose page (/nmdose/ui/patients): the patients over a threshold in a rolling window
// from /nmdose/api/dose/patients, and a patient's timeline on click. On the shared shell: nmdose.js's helpers and
// language (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "pt.title": "Patient cumulative dose",
      "pt.hint": "Patients by pseudonym (a keyed hash of the PatientID; no PatientID is shown). Cumulative dose: " +
        "the largest sum of the studies' total effective dose (CT + NM) over a rolling window ending at one " +
        "of the patient's studies.",
      "pt.f.window": "Window (years)", "pt.f.threshold": "Threshold (mSv)", "pt.f.limit": "Patients", "pt.apply": "Apply",
      "pt.csv": "CSV", "pt.summary": "{n} of {total} patients at or above {threshold} mSv in {years} year(s); " +
        "{nokey} studies without a patient key",
      "pt.empty": "no patient reaches the threshold",
      "pt.timeline": "Timeline of {p} (rolling window: {years} year(s))", "pt.incomplete": "⚠ lower bound",
      "pt.unknown": "unknown", "pt.nm_missing": "NM part missing",
      "col.pt_pseudonym": "Patient (pseudonym)", "col.pt_cumulative_msv": "Cumulative (mSv)", "col.pt_window_start": "Window from",
      "col.pt_window_end": "Window to", "col.pt_window_studies": "Studies in window", "col.pt_incomplete": "Complete?",
      "col.pt_studies": "Studies", "col.pt_all_time_msv": "All studies (mSv)", "col.pt_last_study": "Last study",
      "col.pt_study_date": "Date", "col.pt_study_description": "Description", "col.pt_modality": "Modality",
      "col.pt_ct_msv": "CT E (mSv)", "col.pt_nm_msv": "NM E (mSv)", "col.pt_total_msv": "Total E (mSv)",
      "col.pt_running_msv": "Running sum (mSv)", "col.pt_window_msv": "Window sum (mSv)", "pt.yes": "yes"
    },
    ko: {
      "pt.title": "환자 누적 선량",
      "pt.hint": "환자는 가명(환자 ID의 키 해시)으로 표시되며 환자 ID는 보이지 않습니다. 누적 선량: 환자의 검사 하나에서 " +
        "끝나는 이동 기간 동안 검사별 총 유효선량(CT + 핵의학)의 합 중 가장 큰 값.",
      "pt.f.window": "기간 (년)", "pt.f.threshold": "기준 (mSv)", "pt.f.limit": "환자 수", "pt.apply": "적용",
      "pt.csv": "CSV", "pt.summary": "{years}년 동안 {threshold} mSv 이상인 환자 {total}명 중 {n}명; " +
        "환자 키가 없는 검사 {nokey}건",
      "pt.empty": "기준에 이른 환자가 없습니다",
      "pt.timeline": "{p}의 검사 이력 (이동 기간: {years}년)", "pt.incomplete": "⚠ 하한값",
      "pt.unknown": "알 수 없음", "pt.nm_missing": "핵의학 부분 없음",
      "col.pt_pseudonym": "환자 (가명)", "col.pt_cumulative_msv": "누적 (mSv)", "col.pt_window_start": "기간 시작",
      "col.pt_window_end": "기간 끝", "col.pt_window_studies": "기간 내 검사", "col.pt_incomplete": "완전?",
      "col.pt_studies": "검사 수", "col.pt_all_time_msv": "전체 검사 (mSv)", "col.pt_last_study": "최근 검사",
      "col.pt_study_date": "날짜", "col.pt_study_description": "검사명", "col.pt_modality": "modality",
      "col.pt_ct_msv": "CT 유효선량 (mSv)", "col.pt_nm_msv": "핵의학 유효선량 (mSv)", "col.pt_total_msv": "총 유효선량 (mSv)",
      "col.pt_running_msv": "누적 합 (mSv)", "col.pt_window_msv": "기간 합 (mSv)", "pt.yes": "예"
    }
  };
  var PATIENT_COLUMNS = ["pseudonym", "cumulative_msv", "window_start", "window_end", "window_studies",
    "incomplete", "studies", "all_time_msv", "last_study"];
  var TIMELINE_COLUMNS = ["study_date", "study_description", "modality", "ct_msv", "nm_msv", "total_msv",
    "running_msv", "window_msv"];
  var n = window.nmdose;

  function run() {
    var form = document.getElementById("patients-filters");
    var errorBox = document.getElementById("patients-error");
    var summary = document.getElementById("patients-summary");
    var timelineTitle = document.getElementById("timeline-title");
    var csv = document.getElementById("patients-csv");

    function params() {
      var p = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (String(value).trim() !== "") p.set(key, String(value).trim());
      });
      return p;
    }

    function fail(err) {
      errorBox.hidden = false;
      errorBox.replaceChildren(n.errorText(err));
    }

    function columns(keys, cell) {
      return keys.map(function (c) { return [c, "col.pt_" + c, function (r) { return cell(r, c); }]; });
    }

    function patientCell(r, c) {
      if (c === "incomplete") return n.label(r[c] ? "pt.incomplete" : "pt.yes");
      return n.fmt(r[c]);
    }

    function timelineCell(r, c) {
      if (c === "total_msv" && r.total_unknown) return n.label(r.nm_part_missing ? "pt.nm_missing" : "pt.unknown");
      return n.fmt(r[c]);
    }

    function showPatients(d) {
      n.setLabel(summary, "pt.summary", {n: d.count, total: d.total, threshold: d.threshold_msv,
        years: d.window_years, nokey: d.studies_without_patient_key});
      n.table("patients-table", d.rows, columns(PATIENT_COLUMNS, patientCell), "pt.empty");
      var trs = document.querySelectorAll("#patients-table tbody tr");
      d.rows.forEach(function (r, i) {
        var tr = trs[i];
        tr.className = "clickable";
        tr.tabIndex = 0;
        tr.addEventListener("click", function () { loadTimeline(r.pseudonym); });
        tr.addEventListener("keydown", function (e) { if (e.key === "Enter") loadTimeline(r.pseudonym); });
      });
    }

    function showTimeline(d) {
      timelineTitle.hidden = false;
      n.setLabel(timelineTitle, "pt.timeline", {p: d.pseudonym, years: d.window_years});
      n.table("timeline-table", d.rows, columns(TIMELINE_COLUMNS, timelineCell));
    }

    function load() {
      var p = params();
      errorBox.hidden = true;
      var exportParams = new URLSearchParams(p);
      exportParams.set("format", "csv");
      csv.setAttribute("href", n.root + "api/dose/patients?" + exportParams.toString());
      n.api("dose/patients", p).then(showPatients, fail);
    }

    function loadTimeline(pseudonym) {
      errorBox.hidden = true;
      n.api("dose/patients/" + encodeURIComponent(pseudonym), {window_years: params().get("window_years") || "1"})
        .then(showTimeline, fail);
    }

    form.addEventListener("submit", function (e) { e.preventDefault(); load(); });
    load();
  }

  n.register("patients", I18N, run);
})();
