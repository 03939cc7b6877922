// nmdose dose page (/nmdose/ui/dose): the filters and their suggestions; CT per protocol, description and standard
// name, activity per radiopharmaceutical (tables, box plots with reference levels, two panels when the groups are
// an order of magnitude apart), monthly median DLP, activity against weight, effective dose, the outlier list with
// its acknowledgement, the reference levels and the dose files that failed. Its opening requests are the page
// data's warmed DEFAULT_VIEWS (web/dose_views.py). On the shared shell: nmdose.js's helpers and language
// (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var n = window.nmdose;
  var t = n.t, tv = n.tv, api = n.api, fmt = n.fmt, link = n.link, label = n.label, setLabel = n.setLabel,
    errorText = n.errorText, showError = n.showError, chart = n.chart, warning = n.warning, withTitle = n.withTitle,
    studyLink = n.studyLink, root = n.root, COLORS = n.colors;
  var body = document.body;

  var I18N = {
    en: {
      "dose.title": "Dose by protocol", "dose.ct_protocol": "CT: CTDIvol and DLP per acquisition protocol",
      "dose.ct_description": "CT: per study description (per study)", "dose.monthly": "Monthly median DLP per study",
      "dose.activity": "Administered activity per radiopharmaceutical", "f.from": "From", "f.to": "To",
      "f.protocol": "Protocol", "f.description": "Description", "f.station": "Station", "f.modality": "Modality",
      "f.agent": "Radiopharmaceutical", "f.sex": "Sex", "f.apply": "Apply", "f.csv": "CSV (events)",
      "f.age": "Age (years)", "f.weight": "Weight (kg)", "f.min": "minimum (inclusive)",
      "f.max": "maximum (exclusive)", "f.xlsx": "XLSX (events, one sheet per protocol)",
      "f.xlsx_activity": "XLSX (activity, one sheet per agent)",
      "dose.standard_name": "Per standard name (per study)", "dose.sn_none": "(no standard name)",
      "dose.standard_name_hint": "Studies grouped by the standard names of the standard-names page (one value per " +
        "study: mean CTDIvol, total DLP); activity per administration. Reference levels may match a standard name.",
      "f.csv_names": "CSV (per standard name)",
      "dose.box_hint": "Box: quartiles; line: median; whiskers: most extreme values within 1.5 IQR. " +
        "Red dashes: reference levels (orange: proposed or example).",
      "dose.effective": "Effective dose per exam (per study)", "dose.outliers": "Outliers",
      "dose.outliers_hint": "Flagged: a single exam above {factor} × the official reference level that " +
        "applies to it (levels are set for a facility's median, not for one patient), or above the 95th " +
        "percentile of its protocol or agent when that group has at least {n} values in the filtered data.",
      "dose.outliers_hint_all": "Flagged: a single exam above {factor} × a reference level that applies to it " +
        "(official, proposed or example: each labelled), or above the 95th percentile of its protocol or agent " +
        "when that group has at least {n} values in the filtered data.",
      "monthly.group": "Exam type (study description)", "monthly.top": "the {n} most frequent",
      "monthly.hint": "Median of the studies' total DLP (one value per study; localizers count in no n), per " +
        "month and study description; a month without studies is a gap.",
      "chart.month": "Month", "chart.monthly_y": "median DLP per study (mGy·cm)", "monthly.none": "(no description)",
      "col.nm_missing_n": "Left out of the total: NM part missing", "f.reason": "Reason", "f.all": "all",
      "f.levels": "Levels", "levels.official": "official only", "levels.all": "also proposed and example",
      "page.prev": "Previous", "page.next": "Next", "f.acknowledged": "Acknowledged", "ack.no": "not yet (to review)",
      "ack.yes": "acknowledged", "ack.all": "all", "ack.counts": "{yes} acknowledged, {no} to review",
      "ack.button": "Acknowledge", "ack.again": "Edit", "ack.comment": "Comment (required)", "ack.save": "Save",
      "ack.cancel": "Cancel", "ack.by": "{by}, {at}", "ack.empty": "A comment is required.",
      "col.ack": "Acknowledged", "col.alert_ack": "Alert",
      "ack.denied": "Not allowed: acknowledging needs the alerts:ack permission", "page.of": "{from}–{to} of {total}",
      "col.threshold": "Flagged above", "dose.levels": "Reference levels",
      "dose.dead_letter": "Dose files that failed", "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)",
      "chart.dlp_study": "DLP per study (mGy·cm)", "chart.ctdivol_study": "mean CTDIvol per study (mGy)",
      "chart.activity": "Activity (MBq)", "chart.per_kg": "Activity per kg (MBq/kg)",
      "chart.panel_ct_high": "Diagnostic-dose CT", "chart.axis_ct_high": "diagnostic",
      "chart.panel_ct_low": "Low-dose CT (e.g. attenuation correction of PET-CT, SPECT-CT): own axis",
      "chart.axis_ct_low": "low-dose", "chart.panel_nm_high": "Higher activities", "chart.axis_nm_high": "higher",
      "chart.panel_nm_low": "Lower activities: own axis", "chart.axis_nm_low": "lower",
      "col.standard_name": "Standard name", "col.n": "N", "col.study": "Study", "col.group": "Protocol / agent",
      "col.quantity": "Quantity", "col.level": "Level", "col.ratio": "× level", "col.level_name": "Reference",
      "col.orthanc": "Orthanc", "col.name": "Name", "col.per": "Per", "col.source": "Source", "col.year": "Year",
      "col.match": "Applies to", "col.age": "Age band", "col.file": "File", "col.first_seen": "First seen",
      "col.last_seen": "Last seen", "col.origin": "Source", "col.ct_n": "N (CT E)",
      "col.ct_median": "CT E median (mSv)", "col.ct_mean": "CT E mean (mSv)", "col.nm_n": "N (NM E)",
      "col.nm_median": "NM E median (mSv)", "col.nm_mean": "NM E mean (mSv)", "col.total_n": "N (total)",
      "col.total_median": "Total E median (mSv)", "col.total_mean": "Total E mean (mSv)",
      "col.coef_sources": "Coefficient sources", "col.ctdivol_p95": "CTDIvol p95", "col.dlp_p95": "DLP p95",
      "reason.reference_level": "above {factor} × the level", "reason.p95": "above p95 of its group",
      "status.official": "official DRL (country: see the source)", "status.proposed": "proposed, not an adopted DRL",
      "status.example": "example, not an official DRL", "kind.ct_event": "CT event", "kind.ct_study": "CT exam",
      "kind.administration": "administration", "open": "open in Orthanc", "q.ctdivol_mgy": "CTDIvol",
      "q.dlp_mgycm": "DLP", "q.activity_mbq": "activity", "q.activity_mbq_per_kg": "activity per kg",
      "per.event": "irradiation event", "per.study": "examination (total)", "per.administration": "administration",
      "col.ssde_median": "SSDE median (mGy)", "col.ssde_n": "N with SSDE",
      "col.plausibility_warnings": "Implausible activity (warnings)", "f.manufacturer": "Manufacturer",
      "f.model": "Scanner model", "f.any": "any", "f.scanner": "Scanner", "f.standard_name": "Standard name",
      "f.standard_name_title": "The whole standard name, any case: a CT event's or administration's own, a " +
        "study's own or any of its events' or administrations'",
      "f.hint": "Filters match part of the text, any case (a standard name: the whole name); suggestions appear as you type.",
      "empty.filtered": "no exam matches; filters match part of the text, any case (a standard name: the whole name)",
      "choices.n": "{n} ×", "col.ctdivol_median": "CTDIvol median (mGy)", "col.ctdivol_q1": "CTDIvol Q1",
      "col.ctdivol_q3": "CTDIvol Q3", "col.ctdivol_mean": "CTDIvol mean", "col.ctdivol_p75": "CTDIvol p75",
      "col.dlp_median": "DLP median (mGy·cm)", "col.dlp_q1": "DLP Q1", "col.dlp_q3": "DLP Q3",
      "col.dlp_mean": "DLP mean", "col.dlp_p75": "DLP p75", "col.activity_median": "Activity median (MBq)",
      "col.activity_q1": "Activity Q1 (MBq)", "col.activity_q3": "Activity Q3 (MBq)",
      "col.activity_mean": "Activity mean (MBq)", "col.activity_p95": "Activity p95 (MBq)",
      "col.per_kg_median": "Activity per kg median (MBq/kg)", "col.per_kg_mean": "Activity per kg mean (MBq/kg)",
      "col.per_kg_p95": "Activity per kg p95 (MBq/kg)", "col.e_mean": "Effective dose mean (mSv)",
      "chart.scatter": "Administered activity vs patient weight", "chart.weight": "Patient weight (kg)",
      "status.official_uk": "UK official DRL", "status.official_de": "German official DRL",
      "status.official_kr": "Korean official DRL", "status.official_eu": "European official DRL"
    },
    ko: {
      "dose.title": "프로토콜별 선량", "dose.ct_protocol": "CT: 촬영 프로토콜별 체적 CT 선량지수(CTDIvol) 및 선량길이곱(DLP)",
      "dose.ct_description": "CT: 검사명별 (검사 단위)", "dose.monthly": "월별 검사당 DLP 중앙값", "dose.activity": "방사성의약품별 투여 방사능",
      "f.from": "시작일", "f.to": "종료일", "f.protocol": "프로토콜", "f.description": "검사명", "f.station": "장비",
      "f.modality": "모달리티", "f.agent": "방사성의약품", "f.sex": "성별", "f.apply": "적용", "f.csv": "CSV (이벤트)",
      "f.age": "나이 (세)", "f.weight": "체중 (kg)", "f.min": "최소 (포함)", "f.max": "최대 (미포함)",
      "f.xlsx": "XLSX (이벤트, 프로토콜별 시트)", "f.xlsx_activity": "XLSX (투여 방사능, 의약품별 시트)",
      "dose.standard_name": "표준 검사명별 (검사 단위)", "dose.sn_none": "(표준 검사명 없음)",
      "dose.standard_name_hint": "표준 검사명 페이지의 이름으로 묶은 검사 (검사당 값 하나: CTDIvol 평균, 총 DLP); " +
        "투여 방사능은 투여 단위. 진단참고수준은 표준 검사명과 맞출 수 있습니다.",
      "f.csv_names": "CSV (표준 검사명별)", "dose.box_hint": "상자: 사분위수; 선: 중앙값; 수염: 1.5 IQR 이내의 최댓값·최솟값. " +
        "빨간 점선: 진단참고수준 (주황: 제안값 또는 예시).",
      "dose.effective": "검사별 유효선량 (검사 단위)", "dose.outliers": "이상값",
      "dose.outliers_hint": "표시 기준: 해당 검사에 적용되는 공식 진단참고수준의 {factor}배 초과 (참고수준은 " +
        "환자 개인이 아니라 기관의 중앙값에 대한 값), 또는 필터된 자료에서 값이 {n}개 이상인 프로토콜·의약품 " +
        "그룹의 95 백분위수 초과.",
      "dose.outliers_hint_all": "표시 기준: 해당 검사에 적용되는 진단참고수준(공식, 제안, 예시: 각각 표시)의 " +
        "{factor}배 초과, 또는 필터된 자료에서 값이 {n}개 이상인 프로토콜·의약품 그룹의 95 백분위수 초과.",
      "monthly.group": "검사 종류 (검사명)", "monthly.top": "가장 많은 {n}개",
      "monthly.hint": "검사별 총 DLP의 중앙값 (검사당 한 값; 위치결정 촬영은 n에 포함되지 않음), 월 및 " +
        "검사명별; 검사가 없는 달은 빈칸.",
      "chart.month": "월", "chart.monthly_y": "검사당 DLP 중앙값 (mGy·cm)", "monthly.none": "(검사명 없음)",
      "col.nm_missing_n": "합계에서 제외: 핵의학 부분 없음", "f.reason": "사유", "f.all": "전체", "f.levels": "진단참고수준",
      "levels.official": "공식 진단참고수준만", "levels.all": "제안값·예시 진단참고수준 포함", "page.prev": "이전", "page.next": "다음",
      "f.acknowledged": "확인 여부", "ack.no": "미확인 (검토 대상)", "ack.yes": "확인됨", "ack.all": "전체",
      "ack.counts": "확인 {yes}건, 검토 대상 {no}건", "ack.button": "확인", "ack.again": "수정", "ack.comment": "의견 (필수)",
      "ack.save": "저장", "ack.cancel": "취소", "ack.by": "{by}, {at}", "ack.empty": "의견을 입력하세요.", "col.ack": "확인",
      "col.alert_ack": "경보", "ack.denied": "권한 없음: 확인에는 alerts:ack 권한이 필요합니다", "page.of": "{from}–{to} / 전체 {total}",
      "col.threshold": "표시 기준값", "dose.levels": "진단참고수준 (DRL)", "dose.dead_letter": "처리 실패한 선량 파일",
      "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)", "chart.dlp_study": "검사당 선량길이곱 DLP (mGy·cm)",
      "chart.ctdivol_study": "검사당 평균 CTDIvol (mGy)", "chart.activity": "투여 방사능 (MBq)",
      "chart.per_kg": "체중당 투여 방사능 (MBq/kg)", "chart.panel_ct_high": "진단 선량 CT", "chart.axis_ct_high": "진단 선량",
      "chart.panel_ct_low": "저선량 CT (예: PET-CT, SPECT-CT의 감쇠보정): 별도 축", "chart.axis_ct_low": "저선량",
      "chart.panel_nm_high": "높은 투여 방사능", "chart.axis_nm_high": "높음", "chart.panel_nm_low": "낮은 투여 방사능: 별도 축",
      "chart.axis_nm_low": "낮음", "col.standard_name": "표준 검사명", "col.n": "건수 (N)", "col.study": "검사",
      "col.group": "프로토콜 / 의약품", "col.quantity": "선량 지표", "col.level": "진단참고수준 (DRL)", "col.ratio": "DRL 대비 배수",
      "col.level_name": "적용한 진단참고수준", "col.orthanc": "Orthanc 링크", "col.name": "이름", "col.per": "적용 단위",
      "col.source": "출처", "col.year": "연도", "col.match": "적용 대상", "col.age": "연령대", "col.file": "파일",
      "col.first_seen": "처음", "col.last_seen": "마지막", "col.origin": "출처", "col.ct_n": "검사 수 (CT 유효선량)",
      "col.ct_median": "CT 유효선량 중앙값 (mSv)", "col.ct_mean": "CT 유효선량 평균 (mSv)", "col.nm_n": "검사 수 (핵의학 유효선량)",
      "col.nm_median": "핵의학 유효선량 중앙값 (mSv)", "col.nm_mean": "핵의학 유효선량 평균 (mSv)", "col.total_n": "검사 수 (총 유효선량)",
      "col.total_median": "총 유효선량 중앙값 (mSv)", "col.total_mean": "총 유효선량 평균 (mSv)", "col.coef_sources": "환산계수 출처",
      "col.ctdivol_p95": "CTDIvol 95 백분위수", "col.dlp_p95": "DLP 95 백분위수",
      "reason.reference_level": "진단참고수준의 {factor}배 초과", "reason.p95": "그룹 95 백분위수 초과",
      "status.official": "공식 진단참고수준 (국가는 출처 참조)", "status.proposed": "제안값, 채택된 진단참고수준 아님",
      "status.example": "예시, 공식 진단참고수준 아님", "kind.ct_event": "CT 이벤트", "kind.ct_study": "CT 검사",
      "kind.administration": "투여", "open": "Orthanc에서 열기", "q.ctdivol_mgy": "체적 CT 선량지수 (CTDIvol)",
      "q.dlp_mgycm": "선량길이곱 (DLP)", "q.activity_mbq": "투여 방사능", "q.activity_mbq_per_kg": "체중당 투여 방사능",
      "per.event": "조사 이벤트", "per.study": "검사 (합계)", "per.administration": "투여", "col.ssde_median": "SSDE 중앙값 (mGy)",
      "col.ssde_n": "SSDE 있는 건수", "col.plausibility_warnings": "비정상 투여 방사능 (경고)", "f.manufacturer": "제조사",
      "f.model": "장비 모델", "f.any": "전체", "f.scanner": "장비 (표시 이름)", "f.standard_name": "표준 검사명",
      "f.standard_name_title": "표준 검사명 전체 (대소문자 무시): CT 조사 이벤트·투여는 자신의 이름, 검사는 " +
        "자신의 이름 또는 그 이벤트·투여 중 하나의 이름",
      "f.hint": "필터는 대소문자 구분 없이 텍스트의 일부와 일치합니다 (표준 검사명은 전체 이름). 입력하면 추천 값이 나타납니다.",
      "empty.filtered": "일치하는 검사 없음: 필터는 대소문자 구분 없이 텍스트의 일부와 일치합니다 (표준 검사명은 전체 이름)", "choices.n": "{n}건",
      "col.ctdivol_median": "CTDIvol 중앙값 (mGy)", "col.ctdivol_q1": "CTDIvol 1사분위수", "col.ctdivol_q3": "CTDIvol 3사분위수",
      "col.ctdivol_mean": "CTDIvol 평균", "col.ctdivol_p75": "CTDIvol 75 백분위수", "col.dlp_median": "DLP 중앙값 (mGy·cm)",
      "col.dlp_q1": "DLP 1사분위수", "col.dlp_q3": "DLP 3사분위수", "col.dlp_mean": "DLP 평균", "col.dlp_p75": "DLP 75 백분위수",
      "col.activity_median": "투여 방사능 중앙값 (MBq)", "col.activity_q1": "투여 방사능 1사분위수 (MBq)",
      "col.activity_q3": "투여 방사능 3사분위수 (MBq)", "col.activity_mean": "투여 방사능 평균 (MBq)",
      "col.activity_p95": "투여 방사능 95 백분위수 (MBq)", "col.per_kg_median": "체중당 투여 방사능 중앙값 (MBq/kg)",
      "col.per_kg_mean": "체중당 투여 방사능 평균 (MBq/kg)", "col.per_kg_p95": "체중당 투여 방사능 95 백분위수 (MBq/kg)",
      "col.e_mean": "유효선량 평균 (mSv)", "chart.scatter": "환자 체중 대비 투여 방사능", "chart.weight": "환자 체중 (kg)",
      "status.official_uk": "영국 공식 진단참고수준", "status.official_de": "독일 공식 진단참고수준",
      "status.official_kr": "국내 공식 진단참고수준", "status.official_eu": "유럽 공식 진단참고수준"
    }
  };

  // The scanner filter's options: every scanner not merged into another, by display name (docs/dose.md
  // "Scanners"); the value sent is its id, so a rename keeps the choice. Asked on the select's first use.
  var scannersFilled = false;
  function fillScanners() {
    var select = document.getElementById("scanner-filter");
    if (!select || scannersFilled) return;
    scannersFilled = true;
    api("scanners").then(function (d) {
      d.rows.forEach(function (r) {
        if (r.merged_into) return;
        var opt = document.createElement("option");
        opt.value = String(r.scanner_id);
        opt.textContent = r.display_name;
        select.appendChild(opt);
      });
    }).catch(function () { scannersFilled = false; });
  }

  // The standard-name filter's suggestions (<datalist id="standard-names">): the standard names in use with their
  // studies (GET /api/names/in-use, docs/standard_names.md), asked on the field's first focus like the scanners.
  var standardNamesFilled = false;
  function fillStandardNames() {
    var list = document.getElementById("standard-names");
    if (!list || standardNamesFilled) return;
    standardNamesFilled = true;
    api("names/in-use").then(function (d) {
      list.replaceChildren();
      d.rows.forEach(function (r) {
        var o = document.createElement("option");
        o.value = r.standard_name;
        o.label = r.standard_name + " · " + tv("choices.n", {n: r.studies});
        list.appendChild(o);
      });
      list.setAttribute("data-options", String(d.rows.length));
    }).catch(function () { standardNamesFilled = false; });  // asked again on the next focus
  }

  function filters() {
    var out = {};
    new FormData(document.getElementById("filters")).forEach(function (v, k) { if (v) out[k] = v; });
    return out;
  }

  var STAT_COLUMNS = [["n", "col.n"], ["ctdivol_median", "col.ctdivol_median"],
    ["ctdivol_q1", "col.ctdivol_q1"], ["ctdivol_q3", "col.ctdivol_q3"], ["ctdivol_mean", "col.ctdivol_mean"],
    ["ctdivol_p75", "col.ctdivol_p75"], ["ctdivol_p95", "col.ctdivol_p95"], ["dlp_median", "col.dlp_median"],
    ["dlp_q1", "col.dlp_q1"], ["dlp_q3", "col.dlp_q3"], ["dlp_mean", "col.dlp_mean"], ["dlp_p75", "col.dlp_p75"],
    ["dlp_p95", "col.dlp_p95"]];
  var UNITS = {ctdivol_mgy: "mGy", dlp_mgycm: "mGy·cm", activity_mbq: "MBq", activity_mbq_per_kg: "MBq/kg"};

  // An official level is labelled with the country that adopted it (from its source): a UK or German DRL is
  // not an official level in Korea.
  var COUNTRIES = [[/UKHSA|ARSAC|\bUK\b|United Kingdom|IR\(ME\)R/i, "uk"], [/\bBfS\b|German|Deutschland/i, "de"],
                   [/KDCA|Korea|질병관리청|식품의약품안전처/i, "kr"], [/European|\bEU\b|EUCLID/i, "eu"]];

  function statusLabel(status, source) {
    if (!status) return "";
    if (status === "official") {
      var found = COUNTRIES.filter(function (c) { return c[0].test(source || ""); })[0];
      if (found) return label("status." + status + "_" + found[1]);  // status.official_uk, ...
    }
    return label("status." + status);
  }

  // The dose page's box charts: groups an order of magnitude apart get two panels, each with its own axes
  // (splitGroups); the low groups go to a second canvas `<id>-low` made after the first one's box. `split`: "ct"
  // or "nm", which titles the panels (PANEL_KEYS: [title, axis]).
  var PANEL_KEYS = {
    ct: {high: ["chart.panel_ct_high", "chart.axis_ct_high"], low: ["chart.panel_ct_low", "chart.axis_ct_low"]},
    nm: {high: ["chart.panel_nm_high", "chart.axis_nm_high"], low: ["chart.panel_nm_low", "chart.axis_nm_low"]}
  };
  function boxChart(id, by, series, split) {
    var lowId = id + "-low";
    var parts = splitGroups(n.boxGroups(series, by), by, series[0].rows);
    if (!parts) {
      hideLowPanel(lowId);
      return n.boxChart(id, by, series);
    }
    var panel = function (name, labels) {
      var keys = PANEL_KEYS[split][name];
      return {labels: labels, name: name, title: keys[0], axis: keys[1]};
    };
    var c = n.boxChart(id, by, series, panel("high", parts.high));
    n.boxChart(lowPanel(id, lowId), by, series, panel("low", parts.low));
    return c;
  }

  // Two panels when the largest ratio between neighbouring group medians (of the first measure: CTDIvol,
  // activity) is at least SPLIT_RATIO: the groups below that gap go to the low panel. A group without a
  // positive median of the first measure stays in the high panel. Null: one panel.
  var SPLIT_RATIO = 4;
  function splitGroups(labels, by, rows) {
    var median = {};
    rows.forEach(function (r) { if (r.median > 0) median[r[by]] = r.median; });
    var ms = labels.filter(function (l) { return l in median; }).map(function (l) { return median[l]; });
    ms.sort(function (a, b) { return a - b; });
    var best = 0, cut = null;
    for (var i = 0; i + 1 < ms.length; i++) {
      if (ms[i + 1] / ms[i] > best) { best = ms[i + 1] / ms[i]; cut = ms[i]; }
    }
    if (cut === null || best < SPLIT_RATIO) return null;
    return {high: labels.filter(function (l) { return !(l in median) || median[l] > cut; }),
            low: labels.filter(function (l) { return l in median && median[l] <= cut; })};
  }

  function lowPanel(id, lowId) {
    var canvas = document.getElementById(lowId);
    if (!canvas) {
      var box = document.getElementById(id).parentNode;
      var div = document.createElement("div");
      div.className = box.className;
      canvas = document.createElement("canvas");
      canvas.id = lowId;
      div.appendChild(canvas);
      box.parentNode.insertBefore(div, box.nextSibling);
    }
    canvas.parentNode.hidden = false;
    return lowId;
  }

  function hideLowPanel(lowId) {
    var canvas = document.getElementById(lowId);
    if (!canvas) return;
    n.dropChart(lowId);
    ["data-points", "data-ref-lines", "data-stale", "data-panel", "data-groups", "data-y-max"].forEach(
      function (a) { canvas.removeAttribute(a); });
    canvas.parentNode.hidden = true;
  }

  // A table of the dose page: one without rows under filters that select something says how filters match,
  // instead of a bare "no data" (not the reference levels and dead letters, which no filter narrows).
  function table(id, rows, columns) {
    var el = document.getElementById(id);
    var filtered = el && Object.keys(doseFilters).length && el.matches(FILTERED);
    n.table(id, rows, columns, filtered ? "empty.filtered" : undefined);
  }

  // What each opening answer of the dose page fills: `answers` are keys of its requests (viewKey of a path and
  // parameters of the page data), `fill` gets their answers in that order, `error` names the table that shows a
  // failure (none: the chart stays empty).
  function viewKey(path, params) {
    return path + "?" + Object.keys(params).sort().map(function (k) { return k + "=" + params[k]; }).join("&");
  }
  var doseViews = (JSON.parse(body.getAttribute("data-page-data") || "{}").views) || [];
  var outlierView = doseViews.filter(function (v) { return v.path === "dose/outliers"; })[0] ||
    {path: "dose/outliers", params: {limit: 50}};
  var DOSE_VIEWS = [
    {answers: ["dose/ct-protocols?group=protocol"], error: "ct-table", fill: function (d) {
      // SSDE beside CTDIvol when any event of the filtered set has one
      var ssde = d.rows.some(function (r) { return r.ssde_n > 0; }) ?
        [["ssde_median", "col.ssde_median"], ["ssde_n", "col.ssde_n"]] : [];
      table("ct-table", d.rows, [["protocol", "col.protocol"]].concat(STAT_COLUMNS.slice(0, 7), ssde,
                                                                     STAT_COLUMNS.slice(7)));
    }},
    {answers: ["dose/box?group=protocol&measure=ctdivol", "dose/box?group=protocol&measure=dlp"], error: "ct-table",
     fill: function (ctdivol, dlp) {
      boxChart("ct-chart", "protocol", [
        {key: "chart.ctdivol", unit: "mGy", rows: ctdivol.rows, color: COLORS[6]},
        {key: "chart.dlp", unit: "mGy·cm", rows: dlp.rows, color: COLORS[4]}], "ct");
    }},
    {answers: ["dose/ct-protocols?group=description"], error: "ct-desc-table", fill: function (d) {
      table("ct-desc-table", d.rows, [["description", "col.description"]].concat(STAT_COLUMNS));
    }},
    {answers: ["dose/box?group=description&measure=ctdivol", "dose/box?group=description&measure=dlp"],
     error: "ct-desc-table", fill: function (ctdivol, dlp) {
      boxChart("ct-desc-chart", "description", [
        {key: "chart.ctdivol_study", unit: "mGy", rows: ctdivol.rows, color: COLORS[6]},
        {key: "chart.dlp_study", unit: "mGy·cm", rows: dlp.rows, color: COLORS[4]}], "ct");
    }},
    {answers: ["dose/ct-protocols?group=standard_name"], error: "sn-table", fill: function (d) {
      table("sn-table", d.rows, [["standard_name", "col.standard_name", snNamed]].concat(STAT_COLUMNS));
    }},
    {answers: ["dose/box?group=standard_name&measure=ctdivol", "dose/box?group=standard_name&measure=dlp"],
     error: "sn-table", fill: function (ctdivol, dlp) {
      boxChart("sn-chart", "standard_name", [
        {key: "chart.ctdivol_study", unit: "mGy", rows: snShown(ctdivol.rows), color: COLORS[6]},
        {key: "chart.dlp_study", unit: "mGy·cm", rows: snShown(dlp.rows), color: COLORS[4]}], "ct");
    }},
    {answers: ["dose/activity?group=standard_name"], error: "sn-activity-table", fill: function (d) {
      table("sn-activity-table", d.rows, [["standard_name", "col.standard_name", snNamed], ["n", "col.n"],
        ["activity_median", "col.activity_median"], ["activity_p95", "col.activity_p95"],
        ["per_kg_median", "col.per_kg_median"], ["effective_dose_mean", "col.e_mean"]]);
    }},
    {answers: ["dose/ct-monthly?"], fill: function (d) { monthlyChart(d.rows); }},
    {answers: ["dose/activity?group=agent"], error: "activity-table", fill: function (d) {
      table("activity-table", d.rows, [["agent", "col.agent", function (r) {
          return withTitle(fmt(r.agent), r.agent_code_meaning || "");
        }], ["n", "col.n"],
        ["activity_median", "col.activity_median"], ["activity_q1", "col.activity_q1"],
        ["activity_q3", "col.activity_q3"], ["activity_mean", "col.activity_mean"],
        ["activity_p95", "col.activity_p95"], ["per_kg_median", "col.per_kg_median"],
        ["per_kg_mean", "col.per_kg_mean"], ["per_kg_p95", "col.per_kg_p95"], ["effective_dose_mean", "col.e_mean"],
        ["plausibility_warnings", "col.plausibility_warnings", function (r) {
          return r.plausibility_warnings > 0 ? warning(String(r.plausibility_warnings)) : fmt(r.plausibility_warnings);
        }]]);
    }},
    {answers: ["dose/box?group=agent&measure=activity", "dose/box?group=agent&measure=per_kg"],
     error: "activity-table", fill: function (activity, perKg) {
      boxChart("activity-chart", "agent", [
        {key: "chart.activity", unit: "MBq", rows: activity.rows, color: COLORS[5]},
        {key: "chart.per_kg", unit: "MBq/kg", rows: perKg.rows, color: COLORS[7]}], "nm");
    }},
    // Activity against weight: a dataset and colour per agent, and a dashed line per reference level that applies
    // to the agent (the box plots' answers carry them): MBq/kg a line through zero (level x weight), MBq flat.
    {answers: ["dose/activity-points?", "dose/box?group=agent&measure=per_kg",
               "dose/box?group=agent&measure=activity"], fill: function (d, perKg, activity) {
      var agents = [];
      d.rows.forEach(function (r) { if (agents.indexOf(r.agent) < 0) agents.push(r.agent); });
      var levels = {};
      [[perKg, "MBq/kg"], [activity, "MBq"]].forEach(function (a) {
        a[0].rows.forEach(function (b) {
          (b.levels || []).forEach(function (lv) {
            (levels[b.agent] = levels[b.agent] || []).push({value: lv.value, unit: a[1], name: lv.name});
          });
        });
      });
      var datasets = [], lines = [];
      agents.forEach(function (agent, i) {
        var color = COLORS[(i + 5) % COLORS.length];
        var mine = d.rows.filter(function (r) { return r.agent === agent; });
        datasets.push({label: agent || "?", backgroundColor: color, borderColor: color,
          data: mine.map(function (r) { return {x: r.weight_kg, y: r.activity_mbq}; })});
        var ws = mine.map(function (r) { return r.weight_kg; });
        var lo = Math.min.apply(null, ws), hi = Math.max.apply(null, ws);
        (levels[agent] || []).forEach(function (lv) {
          var slope = lv.unit === "MBq/kg";
          lines.push({type: "line", level: lv, agent: agent, label: "", borderColor: color, backgroundColor: color,
            borderDash: [6, 3], borderWidth: 2, pointRadius: 0, fill: false,
            data: [lo, hi].map(function (x) { return {x: x, y: slope ? lv.value * x : lv.value}; })});
        });
      });
      function levelLabels() {
        lines.forEach(function (ds) {
          ds.label = (ds.agent || "?") + " – " + t("chart.level") + " " + fmt(ds.level.value) + " " + ds.level.unit;
        });
      }
      levelLabels();
      var c = chart("scatter-chart", {type: "scatter", data: {datasets: datasets.concat(lines)},
        options: {plugins: {title: {display: true, text: t("chart.scatter")}},
                  scales: {x: {type: "linear", title: {display: true, text: t("chart.weight")}},
                           y: {beginAtZero: true, title: {display: true, text: t("chart.activity")}}}}});
      var canvas = document.getElementById("scatter-chart");
      canvas.setAttribute("data-datasets", String(datasets.length));
      canvas.setAttribute("data-level-lines", String(lines.length));
      c.relabel = function () {
        levelLabels();
        c.options.plugins.title.text = t("chart.scatter");
        c.options.scales.x.title.text = t("chart.weight");
        c.options.scales.y.title.text = t("chart.activity");
        c.update();
      };
    }},
    {answers: ["dose/effective-dose?"], error: "effective-table", fill: function (d) {
      table("effective-table", d.rows, [["description", "col.description"], ["studies", "col.studies"],
        ["ct_n", "col.ct_n"], ["ct_median", "col.ct_median"], ["ct_mean", "col.ct_mean"], ["nm_n", "col.nm_n"],
        ["nm_median", "col.nm_median"], ["nm_mean", "col.nm_mean"], ["total_n", "col.total_n"],
        ["total_median", "col.total_median"], ["total_mean", "col.total_mean"],
        ["nm_missing_n", "col.nm_missing_n"],
        ["sources", "col.coef_sources", function (r) {
          return r.ct_sources.concat(r.nm_sources).join(" · ");
        }]]);
    }},
    {answers: [viewKey(outlierView.path, outlierView.params)], error: "outlier-table", fill: function (d) {
      fillOutliers(d);
    }}
  ];

  // The outlier list, one page at a time: the opening request is DEFAULT_VIEWS' (its `limit` is the page size);
  // Previous / Next and the reason and levels selectors ask for other pages of the same filters.
  function fillOutliers(d) {
    var minN = d.p95_min_values;
    document.getElementById("outlier-count").textContent = String(d.total);
    setLabel(document.getElementById("outlier-rule"),
             d.levels === "all" ? "dose.outliers_hint_all" : "dose.outliers_hint", {factor: d.factor, n: minN});
    var to = d.offset + d.rows.length;
    setLabel(document.getElementById("outlier-page"), "page.of",
             {from: d.rows.length ? d.offset + 1 : 0, to: to, total: d.total});
    setLabel(document.querySelector("#outlier-reason option[value=reference_level]"), "reason.reference_level",
             {factor: d.factor});
    document.getElementById("outlier-prev").disabled = d.offset <= 0;
    document.getElementById("outlier-next").disabled = to >= d.total;
    outlierOffset = d.offset;
    var counts = document.getElementById("outlier-ack-counts");
    if (counts && d.ack_counts) setLabel(counts, "ack.counts", {yes: d.ack_counts.yes, no: d.ack_counts.no});
    table("outlier-table", d.rows, [["study_date", "col.date"],
      ["study_instance_uid", "col.study", function (r) { return studyLink(r.study_instance_uid); }],
      ["study_description", "col.description"],
      ["kind", "col.group", function (r) {
        var span = document.createElement("span");
        span.appendChild(label("kind." + r.kind));
        if (r.group !== null) span.appendChild(document.createTextNode(": " + r.group));
        if (r.ordinal !== null && r.kind === "ct_event") span.appendChild(document.createTextNode(" #" + r.ordinal));
        return span;
      }],
      ["quantity", "col.quantity", function (r) { return label("q." + r.quantity); }],
      ["value", "col.value", function (r) {
        return fmt(r.value) + " " + UNITS[r.quantity];
      }], ["level", "col.level", function (r) { return fmt(r.level) + " " + UNITS[r.quantity]; }],
      ["threshold", "col.threshold", function (r) { return fmt(r.threshold) + " " + UNITS[r.quantity]; }],
      ["ratio", "col.ratio"], ["reason", "col.reason", function (r) {
        return label("reason." + r.reason, {factor: d.factor});
      }],
      ["level_name", "col.level_name", function (r) {
        if (!r.level_name) return "";
        var span = document.createElement("span");
        span.appendChild(document.createTextNode(r.level_name + " ("));
        span.appendChild(statusLabel(r.level_status, r.level_source));
        span.appendChild(document.createTextNode(")"));
        return span;
      }],
      ["link", "col.orthanc", function (r) {
        var a = link(root + r.link, "");
        a.className = "orthanc-link";
        a.appendChild(label("open"));
        return a;
      }],
      ["ack", "col.ack", function (r) { return ackCell(d, r); }],
      ["alert_ack", "col.alert_ack", function (r) {
        if (!r.alert_acknowledged_at) return "";
        var span = label("ack.by", {by: r.alert_acknowledged_by, at: String(r.alert_acknowledged_at).slice(0, 16)});
        span.className = "alert-ack";
        if (r.alert_ack_comment) span.title = r.alert_ack_comment;
        return span;
      }]]);
  }

  // Acknowledging an outlier (POST dose/outliers/ack, permission alerts:ack; docs/web.md): the study's hits of the
  // row's reason, under the filters and levels the list was asked with; the rows of that study and reason are
  // then drawn again as acknowledged (who, when, comment). A refusal (403) says which permission is missing.
  function ackCell(d, r) {
    var cell = document.createElement("span");
    cell.className = "outlier-ack";
    if (r.acknowledged_at) {
      var done = label("ack.by", {by: r.acknowledged_by, at: String(r.acknowledged_at).slice(0, 16)});
      done.className = "ack-done";
      cell.appendChild(done);
      var comment = document.createElement("span");
      comment.className = "ack-comment";
      comment.textContent = " \u201c" + r.ack_comment + "\u201d ";
      cell.appendChild(comment);
    }
    var open = document.createElement("button");
    open.type = "button";
    open.className = "ack-open";
    open.appendChild(label(r.acknowledged_at ? "ack.again" : "ack.button"));
    open.addEventListener("click", function () {
      open.hidden = true;
      var form = ackForm(d, r, function () { open.hidden = false; });
      cell.appendChild(form);
      form.querySelector("input").focus();
    });
    cell.appendChild(open);
    return cell;
  }

  function ackForm(d, r, closed) {
    var form = document.createElement("form");
    form.className = "ack-form";
    var field = document.createElement("label");
    field.appendChild(label("ack.comment"));
    var input = document.createElement("input");
    input.name = "comment";
    input.maxLength = 2000;
    input.value = r.ack_comment || "";
    field.appendChild(document.createTextNode(" "));
    field.appendChild(input);
    var save = document.createElement("button");
    save.type = "submit";
    save.className = "ack-save";
    save.appendChild(label("ack.save"));
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "ack-cancel";
    cancel.appendChild(label("ack.cancel"));
    var message = document.createElement("span");
    message.className = "ack-error error";
    [field, save, cancel, message].forEach(function (el) { form.appendChild(el); });
    cancel.addEventListener("click", function () { form.remove(); closed(); });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      message.replaceChildren();
      if (!input.value.trim()) { message.appendChild(label("ack.empty")); return; }
      save.disabled = true;
      var q = Object.assign({}, doseFilters);
      if (d.levels && d.levels !== "official") q.levels = d.levels;
      var query = new URLSearchParams(q).toString();
      window.nmdoseFetch(root + "api/dose/outliers/ack" + (query ? "?" + query : ""), {
        method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({study_instance_uid: r.study_instance_uid, reason: r.reason, comment: input.value})
      }).then(function (resp) {
        return resp.json().then(function (a) {
          if (!resp.ok) { var err = new Error(a.error || resp.statusText); err.status = resp.status; throw err; }
          return a;
        });
      }).then(function (a) {
        d.rows.forEach(function (x) {
          if (x.study_instance_uid === a.study_instance_uid && (a.reason === "any" || x.reason === a.reason)) {
            x.acknowledged_by = a.acknowledged_by;
            x.acknowledged_at = a.acknowledged_at;
            x.ack_comment = a.ack_comment;
          }
        });
        fillOutliers(d);
      }).catch(function (err) {
        save.disabled = false;
        if (err.status === 403) message.appendChild(label("ack.denied"));
        message.appendChild(errorText(err));
      });
    });
    return form;
  }

  // Monthly median DLP per study: one line per study description (the TOP_GROUPS with most studies, or the one
  // chosen), over every month of the range (the API answers a month without studies as a row with n = 0).
  var TOP_GROUPS = 5;
  var monthly = {rows: [], groups: []};

  function monthlyChart(rows) {
    var totals = {};
    rows.forEach(function (r) {
      if (r.description !== null) totals[r.description] = (totals[r.description] || 0) + r.n;
    });
    var groups = Object.keys(totals).sort(function (a, b) {
      return totals[b] - totals[a] || (a < b ? -1 : a > b ? 1 : 0);
    });
    var select = document.getElementById("monthly-group");
    var before = select.value === "" ? null : monthly.groups[Number(select.value)];
    monthly = {rows: rows, groups: groups};
    select.replaceChildren();
    var top = document.createElement("option");
    top.value = "";
    setLabel(top, "monthly.top", {n: TOP_GROUPS});
    select.appendChild(top);
    groups.forEach(function (g, i) {
      var o = document.createElement("option");
      o.value = String(i);
      if (g === "") setLabel(o, "monthly.none"); else o.textContent = g;
      select.appendChild(o);
    });
    select.value = before !== null && groups.indexOf(before) >= 0 ? String(groups.indexOf(before)) : "";
    drawMonthly();
  }

  function drawMonthly() {
    var select = document.getElementById("monthly-group");
    var months = [];
    var value = {};
    monthly.rows.forEach(function (r) {
      if (months[months.length - 1] !== r.month) months.push(r.month);
      if (r.description !== null) value[r.month + "\t" + r.description] = r.dlp_median;
    });
    var chosen = select.value === "" ? monthly.groups.slice(0, TOP_GROUPS) : [monthly.groups[Number(select.value)]];
    var c = chart("monthly-chart", {type: "line", data: {labels: months, datasets: chosen.map(function (g, i) {
      var v = months.map(function (m) { var x = value[m + "\t" + g]; return x === undefined ? null : x; });
      return {label: g === "" ? t("monthly.none") : g, borderColor: COLORS[i % COLORS.length],
              backgroundColor: COLORS[i % COLORS.length], spanGaps: false, data: v};
    })}, options: {scales: {
      x: {title: {display: true, text: t("chart.month")}},
      y: {beginAtZero: true, title: {display: true, text: t("chart.monthly_y")}}}}});
    var canvas = document.getElementById("monthly-chart");
    canvas.setAttribute("data-labels", String(months.length));
    canvas.setAttribute("data-y-title", t("chart.monthly_y"));
    c.relabel = function () {
      c.options.scales.x.title.text = t("chart.month");
      c.options.scales.y.title.text = t("chart.monthly_y");
      canvas.setAttribute("data-y-title", t("chart.monthly_y"));
      c.update();
    };
  }

  var outlierOffset = 0;
  var outlierSeq = 0;
  var doseFilters = {};

  function loadOutliers(offset) {
    var seq = ++outlierSeq;
    var gen = doseGeneration;
    var params = Object.assign({}, outlierView.params, doseFilters);
    if (offset > 0) params.offset = offset;
    var reason = document.getElementById("outlier-reason").value;
    if (reason) params.reason = reason;
    var levels = document.getElementById("outlier-levels").value;
    if (levels !== "official") params.levels = levels;
    var acknowledged = document.getElementById("outlier-acknowledged").value;
    if (acknowledged !== "no") params.acknowledged = acknowledged;
    document.getElementById("outlier-table").removeAttribute("data-rows");
    api(outlierView.path, params).then(function (d) {
      if (seq === outlierSeq && gen === doseGeneration) fillOutliers(d);
    }).catch(function (e) { if (seq === outlierSeq && gen === doseGeneration) showError("outlier-table", e); });
  }

  function outlierControls() {
    if (!document.getElementById("outlier-controls")) return;
    var rules = (JSON.parse(body.getAttribute("data-page-data") || "{}")).outliers;
    if (rules) {  // the rule is shown before the list arrives
      setLabel(document.getElementById("outlier-rule"), "dose.outliers_hint",
               {factor: rules.factor, n: rules.p95_min_values});
      setLabel(document.querySelector("#outlier-reason option[value=reference_level]"), "reason.reference_level",
               {factor: rules.factor});
    }
    document.getElementById("monthly-group").addEventListener("change", drawMonthly);
    var size = outlierView.params.limit || 50;
    document.getElementById("outlier-prev").addEventListener("click", function () {
      loadOutliers(Math.max(0, outlierOffset - size));
    });
    document.getElementById("outlier-next").addEventListener("click", function () {
      loadOutliers(outlierOffset + size);
    });
    ["outlier-reason", "outlier-levels", "outlier-acknowledged"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () { loadOutliers(0); });
    });
  }

  // The dose page's results that depend on the filters: marked stale (greyed) by Apply until their new answer
  // fills them, and emptied when the API refuses the filters, so no earlier numbers stay under the error.
  var FILTERED = "main table.data:not(#levels-table):not(#dead-letter-table), main canvas";

  function markStale() {
    document.querySelectorAll(FILTERED).forEach(function (el) { el.setAttribute("data-stale", ""); });
  }

  function clearStale() {
    document.querySelectorAll(FILTERED).forEach(function (el) {
      if (!el.hasAttribute("data-stale")) return;
      if (el.tagName === "CANVAS") {
        n.dropChart(el.id);
        el.getContext("2d").clearRect(0, 0, el.width, el.height);
        el.removeAttribute("data-points");
        el.removeAttribute("data-ref-lines");
      } else {
        el.replaceChildren();
        el.removeAttribute("data-rows");
      }
    });
    ["outlier-count", "outlier-page"].forEach(function (id) {
      var el = document.getElementById(id);
      el.removeAttribute("data-i18n");
      el.textContent = "–";
    });
    ["outlier-prev", "outlier-next"].forEach(function (id) { document.getElementById(id).disabled = true; });
  }

  var doseGeneration = 0;
  var STALE = new Error("stale");

  // Suggestions of a text filter (<datalist id="choices-<name>">): the values the data holds under the other
  // filters applied (GET /api/dose/choices), with their counts; asked when the field is first focused after an
  // Apply.
  function fillChoices(input) {
    var list = document.getElementById(input.getAttribute("list"));
    if (!list || list.getAttribute("data-generation") === String(doseGeneration)) return;
    list.setAttribute("data-generation", String(doseGeneration));
    var gen = doseGeneration;
    api("dose/choices", Object.assign({}, doseFilters, {field: input.name})).then(function (d) {
      if (gen !== doseGeneration) return;
      list.replaceChildren();
      d.rows.forEach(function (r) {
        var o = document.createElement("option");
        o.value = r.value;
        o.label = r.value + " · " + tv("choices.n", {n: r.n});
        list.appendChild(o);
      });
      list.setAttribute("data-options", String(d.rows.length));
    }).catch(function () { list.removeAttribute("data-generation"); });  // asked again on the next focus
  }

  function dose() {
    var f = filters();
    var gen = ++doseGeneration;
    doseFilters = f;
    outlierSeq += 1;  // a page of the outliers asked before this Apply is dropped
    if (document.getElementById("outlier-controls")) {
      document.getElementById("outlier-reason").value = "";
      document.getElementById("outlier-levels").value = "official";
      document.getElementById("outlier-acknowledged").value = "no";
    }
    // Answers to an earlier Apply are dropped, so a slow old request never overwrites newer numbers.
    function call(path, params) {
      return api(path, params).then(function (d) {
        if (gen !== doseGeneration) throw STALE;
        return d;
      });
    }
    var errorBox = document.getElementById("filter-error");
    var failed = false;
    function fail(id) {
      return function (e) {
        if (e === STALE) return;
        if (!failed) {
          failed = true;
          errorBox.replaceChildren(errorText(e));
          errorBox.hidden = false;
          clearStale();  // the earlier filters' numbers must not stay on screen under the error
        }
        showError(id, e);
      };
    }
    errorBox.hidden = true;
    markStale();
    function exportLink(id, path, format) {
      document.getElementById(id).href = root + "api/dose/" + path + "?" +
        new URLSearchParams(Object.assign({format: format}, f));
    }
    exportLink("csv-link", "ct-events", "csv");
    exportLink("xlsx-link", "ct-events", "xlsx");
    exportLink("xlsx-activity-link", "activity-points", "xlsx");

    // The opening requests come from the page data (DEFAULT_VIEWS in web/dose_views.py, which the dose worker
    // keeps computed), each with the filters added; DOSE_VIEWS says what their answers fill.
    var answers = {};
    doseViews.forEach(function (v) {
      var p = call(v.path, Object.assign({}, v.params, f));
      p.catch(function () {});  // a failure is shown by the view that reads the answer
      answers[viewKey(v.path, v.params)] = p;
    });
    DOSE_VIEWS.forEach(function (view) {
      var asked = view.answers.map(function (k) { return answers[k]; });
      if (asked.some(function (p) { return !p; })) return;  // not an opening request of this page
      Promise.all(asked).then(function (d) { view.fill.apply(null, d); })
        .catch(view.error ? fail(view.error) : function () {});
    });
    call("dose/reference-levels").then(function (d) {
      table("levels-table", d.rows, [["name", "col.name"], ["modality", "col.modality"],
        ["quantity", "col.quantity", function (r) { return label("q." + r.quantity); }],
        ["per", "col.per", function (r) { return label("per." + r.per); }], ["value", "col.value", function (r) {
          return fmt(r.value) + " " + r.unit;
        }], ["status", "col.status", function (r) { return statusLabel(r.status, r.source); }],
        ["match", "col.match", function (r) {
          var parts = [];
          ["protocols", "descriptions", "target_regions", "agents", "standard_names"].forEach(function (k) {
            if (r[k] && r[k].length) parts.push(k + ": " + r[k].join(" | "));
          });
          return parts.join("; ");
        }], ["age", "col.age", function (r) {
          if (r.age_min === null && r.age_max === null) return "";
          return (r.age_min === null ? "" : fmt(r.age_min)) + "–" + (r.age_max === null ? "" : fmt(r.age_max));
        }], ["source", "col.source"], ["year", "col.year"]]);
    }).catch(fail("levels-table"));
    call("dose/dead-letter").then(function (d) {
      document.getElementById("dead-letter-count").textContent = String(d.open);
      table("dead-letter-table", d.rows, [["file_path", "col.file"], ["error", "col.error"],
        ["source", "col.origin"], ["attempts", "col.attempts"], ["first_seen", "col.first_seen"],
        ["last_seen", "col.last_seen"]]);
    }).catch(fail("dead-letter-table"));
    exportLink("sn-csv-link", "ct-protocols", "csv");  // per standard name: the link carries the group
    var snLink = document.getElementById("sn-csv-link");
    if (snLink) snLink.href += "&group=standard_name";
  }

  // The section per standard name (docs/standard_names.md): '' is a study without one, labelled as such (on the
  // box plot's axis in the language of the moment it is drawn).
  function snNamed(r) { return r.standard_name ? r.standard_name : label("dose.sn_none"); }
  function snShown(rows) {
    return rows.map(function (r) {
      return r.standard_name ? r : Object.assign({}, r, {standard_name: t("dose.sn_none")});
    });
  }

  function run() {
    var form = document.getElementById("filters");
    if (form) {
      form.addEventListener("submit", function (ev) { ev.preventDefault(); dose(); });
      form.querySelectorAll("input[list^='choices-']").forEach(function (input) {
        input.addEventListener("focus", function () { fillChoices(input); });
      });
      var standardNameInput = document.getElementById("standard-name-filter");
      if (standardNameInput) {
        ["focus", "pointerdown"].forEach(function (ev) { standardNameInput.addEventListener(ev, fillStandardNames); });
      }
      // the scanner choices are asked when the select is first used, like the suggestions: the page's opening
      // requests stay the warmed DEFAULT_VIEWS
      var scannerSelect = document.getElementById("scanner-filter");
      if (scannerSelect) {
        ["focus", "pointerdown"].forEach(function (ev) { scannerSelect.addEventListener(ev, fillScanners); });
      }
    }
    outlierControls();
    dose();
  }

  n.register("dose", I18N, run);
})();
