// nmdose physicist's report page (/nmdose/ui/report, issue 19) and its print view (/nmdose/ui/report/print?year=):
// the reference-level comparison per group x scanner x year, trends on a time axis (every period a category),
// histograms, the workload by weekday and hour, the annual report. On the shared shell: nmdose.js's helpers and
// language (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "nav.report": "Report", "rp.title": "Dose report",
      "rp.hint": "For the medical physicist: local doses against the reference levels per group, scanner and " +
        "year, trends, distributions and workload. Scanner: the station name (else manufacturer and model).",
      "rp.f.from": "From", "rp.f.to": "To", "rp.f.station": "Station", "rp.f.protocol": "Protocol",
      "rp.f.description": "Description", "rp.f.agent": "Radiopharmaceutical", "rp.f.measure": "Measure",
      "rp.f.standard_name": "Standard name",
      "rp.f.group": "Group", "rp.f.period": "Trend per", "rp.f.apply": "Apply",
      "rp.m.ctdivol": "CTDIvol (mGy)", "rp.m.dlp": "DLP (mGy·cm)", "rp.m.activity": "Activity (MBq)",
      "rp.m.per_kg": "Activity per kg (MBq/kg)",
      "rp.g.default": "default", "rp.g.protocol": "acquisition protocol", "rp.g.description": "study description",
      "rp.g.standard_name": "standard name", "rp.g.agent": "radiopharmaceutical", "rp.g.age_band": "age band",
      "rp.p.month": "month", "rp.p.quarter": "quarter", "rp.p.year": "year",
      "rp.levels": "Reference-level comparison",
      "rp.levels_hint": "One row per group, scanner and year. The local median is compared with the reference " +
        "level that applies (official before proposed before example); ratio = median / level; ⚠ when the " +
        "median is above the level.",
      "rp.csv": "CSV", "rp.xlsx": "XLSX", "rp.trends": "Trends",
      "rp.trends_hint": "Median per period for the five groups with the most values; every period of the range " +
        "on the time axis (a gap: no value).",
      "rp.histogram": "Histogram",
      "rp.histogram_hint": "Equal bins from the smallest value to the 99th percentile (larger values in the last " +
        "bin), for the four groups with the most values.",
      "rp.workload": "Workload by weekday and hour", "rp.kind": "Kind", "rp.kind.all": "all",
      "rp.kind.nm": "NM / PET", "rp.kind.ctnm": "CT + NM / PET", "rp.kind.other": "other",
      "rp.annual": "Annual report", "rp.annual_year": "Annual dose report {year}", "rp.year": "Year",
      "rp.show": "Show", "rp.annual_xlsx": "XLSX (annual report)", "rp.print_view": "Print view",
      "rp.print": "Print", "rp.generated": "Generated {time}; reference levels compared with the median.",
      "rp.annual_levels": "Reference-level comparison", "rp.annual_protocols": "CT per acquisition protocol",
      "rp.annual_agents": "Radiopharmaceuticals", "rp.annual_workload": "Studies per weekday",
      "rp.empty": "no value in this selection", "rp.above": "⚠ above", "rp.below": "below",
      "rp.no_level": "no level applies", "rp.values": "values", "rp.unknown": "unknown",
      "rp.status.official": "official", "rp.status.proposed": "proposed", "rp.status.example": "example",
      "rp.wd.1": "Mon", "rp.wd.2": "Tue", "rp.wd.3": "Wed", "rp.wd.4": "Thu", "rp.wd.5": "Fri", "rp.wd.6": "Sat",
      "rp.wd.7": "Sun", "rp.hour_unknown": "time unknown", "rp.total": "total",
      "col.rp_group": "Group", "col.rp_scanner": "Scanner", "col.rp_year": "Year", "col.rp_measure": "Measure",
      "col.rp_n": "N", "col.rp_median": "Median", "col.rp_p75": "75th percentile",
      "col.rp_level": "Reference level", "col.rp_level_name": "Level", "col.rp_level_status": "Status",
      "col.rp_level_source": "Source", "col.rp_level_n": "Values it applies to", "col.rp_ratio": "Median / level",
      "col.rp_flag": "Flag", "col.rp_period": "Period", "col.rp_weekday": "Weekday", "col.rp_kind": "Kind",
      "col.rp_protocol": "Acquisition protocol", "col.rp_ctdivol_median": "CTDIvol median (mGy)",
      "col.rp_ctdivol_p75": "CTDIvol p75 (mGy)", "col.rp_dlp_median": "DLP median (mGy·cm)",
      "col.rp_dlp_p75": "DLP p75 (mGy·cm)", "col.rp_agent": "Radiopharmaceutical",
      "col.rp_activity_median": "Activity median (MBq)", "col.rp_activity_p75": "Activity p75 (MBq)",
      "col.rp_per_kg_median": "Activity per kg median (MBq/kg)", "col.rp_studies": "Studies",
      "rp.size": "Patient size",
      "rp.size_hint": "Dose against patient weight, a colour per group, for the groups with the most values (a " +
        "fixed sample of at most 300 points each; N counts them all). Dashed lines: the reference levels whose " +
        "names match the group (in MBq/kg a line through zero, level × weight); a level for part of the group " +
        "only (an age band, a description) is marked “part”.",
      "rp.size_ct": "CT: CTDIvol and DLP against weight",
      "rp.size_nm": "Radiopharmaceuticals: activity against weight", "rp.size_group": "Group",
      "rp.size_all": "all shown groups", "rp.size_weight": "Patient weight (kg)", "rp.size_level": "reference level",
      "rp.size_part": "part",
      "rp.size_missing": "Without a patient weight (counted, not drawn): {ct} CT and {nm} NM / PET studies. " +
        "Shown: {ctg} of {ctt} CT groups, {nmg} of {nmt} radiopharmaceuticals.",
      "col.rp_with_weight": "With weight", "col.rp_no_weight": "Without weight", "col.rp_shown": "Points shown",
      "col.rp_levels": "Reference levels"
    },
    ko: {
      "nav.report": "보고서", "rp.title": "선량 보고서",
      "rp.hint": "의학물리사를 위한 보고서: 그룹·장비·연도별 진단참고수준 비교, 추세, 분포, 업무량. 장비: 스테이션 이름 " +
        "(없으면 제조사와 모델).",
      "rp.f.from": "시작일", "rp.f.to": "종료일", "rp.f.station": "스테이션", "rp.f.protocol": "프로토콜",
      "rp.f.description": "검사명", "rp.f.agent": "방사성의약품", "rp.f.measure": "측정값",
      "rp.f.standard_name": "표준 검사명",
      "rp.f.group": "그룹", "rp.f.period": "추세 단위", "rp.f.apply": "적용",
      "rp.m.ctdivol": "CTDIvol (mGy)", "rp.m.dlp": "DLP (mGy·cm)", "rp.m.activity": "투여 방사능 (MBq)",
      "rp.m.per_kg": "체중당 투여 방사능 (MBq/kg)",
      "rp.g.default": "기본값", "rp.g.protocol": "촬영 프로토콜", "rp.g.description": "검사명",
      "rp.g.standard_name": "표준 검사명", "rp.g.agent": "방사성의약품", "rp.g.age_band": "연령대",
      "rp.p.month": "월", "rp.p.quarter": "분기", "rp.p.year": "연",
      "rp.levels": "진단참고수준 비교",
      "rp.levels_hint": "그룹·장비·연도별 한 행. 기관 중앙값을 적용되는 참고수준(공식, 제안, 예시 순)과 비교합니다; " +
        "비율 = 중앙값 / 참고수준; 중앙값이 참고수준보다 높으면 ⚠.",
      "rp.csv": "CSV", "rp.xlsx": "XLSX", "rp.trends": "추세",
      "rp.trends_hint": "값이 가장 많은 다섯 그룹의 기간별 중앙값; 시간 축에 범위의 모든 기간이 있습니다 (빈 곳: 값 없음).",
      "rp.histogram": "히스토그램",
      "rp.histogram_hint": "가장 작은 값부터 99 백분위수까지 같은 폭의 구간 (더 큰 값은 마지막 구간), 값이 가장 많은 " +
        "네 그룹.",
      "rp.workload": "요일·시간별 업무량", "rp.kind": "종류", "rp.kind.all": "전체",
      "rp.kind.nm": "핵의학 / PET", "rp.kind.ctnm": "CT + 핵의학 / PET", "rp.kind.other": "기타",
      "rp.annual": "연간 보고서", "rp.annual_year": "{year}년 연간 선량 보고서", "rp.year": "연도",
      "rp.show": "보기", "rp.annual_xlsx": "XLSX (연간 보고서)", "rp.print_view": "인쇄용 보기",
      "rp.print": "인쇄", "rp.generated": "작성 {time}; 참고수준은 중앙값과 비교했습니다.",
      "rp.annual_levels": "진단참고수준 비교", "rp.annual_protocols": "촬영 프로토콜별 CT",
      "rp.annual_agents": "방사성의약품", "rp.annual_workload": "요일별 검사 수",
      "rp.empty": "이 선택에 값이 없습니다", "rp.above": "⚠ 초과", "rp.below": "이하",
      "rp.no_level": "적용되는 참고수준 없음", "rp.values": "값", "rp.unknown": "알 수 없음",
      "rp.status.official": "공식", "rp.status.proposed": "제안", "rp.status.example": "예시",
      "rp.wd.1": "월", "rp.wd.2": "화", "rp.wd.3": "수", "rp.wd.4": "목", "rp.wd.5": "금", "rp.wd.6": "토",
      "rp.wd.7": "일", "rp.hour_unknown": "시각 모름", "rp.total": "합계",
      "col.rp_group": "그룹", "col.rp_scanner": "장비", "col.rp_year": "연도", "col.rp_measure": "측정값",
      "col.rp_n": "건수", "col.rp_median": "중앙값", "col.rp_p75": "75 백분위수",
      "col.rp_level": "참고수준", "col.rp_level_name": "참고수준 이름", "col.rp_level_status": "상태",
      "col.rp_level_source": "출처", "col.rp_level_n": "적용된 값의 수", "col.rp_ratio": "중앙값 / 참고수준",
      "col.rp_flag": "표시", "col.rp_period": "기간", "col.rp_weekday": "요일", "col.rp_kind": "종류",
      "col.rp_protocol": "촬영 프로토콜", "col.rp_ctdivol_median": "CTDIvol 중앙값 (mGy)",
      "col.rp_ctdivol_p75": "CTDIvol 75 백분위수 (mGy)", "col.rp_dlp_median": "DLP 중앙값 (mGy·cm)",
      "col.rp_dlp_p75": "DLP 75 백분위수 (mGy·cm)", "col.rp_agent": "방사성의약품",
      "col.rp_activity_median": "투여 방사능 중앙값 (MBq)", "col.rp_activity_p75": "투여 방사능 75 백분위수 (MBq)",
      "col.rp_per_kg_median": "체중당 투여 방사능 중앙값 (MBq/kg)", "col.rp_studies": "검사 수",
      "rp.size": "환자 체격",
      "rp.size_hint": "환자 체중 대비 선량, 그룹마다 한 색, 값이 가장 많은 그룹 (그룹마다 최대 300개의 고정 표본; " +
        "건수는 전체를 셉니다). 점선: 이름이 그룹과 맞는 참고수준 (MBq/kg이면 원점을 지나는 선, 참고수준 × 체중); " +
        "그룹의 일부에만 적용되는 참고수준 (연령대, 검사명)은 “일부”로 표시합니다.",
      "rp.size_ct": "CT: 체중 대비 CTDIvol과 DLP",
      "rp.size_nm": "방사성의약품: 체중 대비 투여 방사능", "rp.size_group": "그룹",
      "rp.size_all": "표시된 모든 그룹", "rp.size_weight": "환자 체중 (kg)", "rp.size_level": "참고수준",
      "rp.size_part": "일부",
      "rp.size_missing": "환자 체중이 없는 검사 (세었으나 그리지 않음): CT {ct}건, 핵의학 / PET {nm}건. " +
        "표시: CT 그룹 {ctt}개 중 {ctg}개, 방사성의약품 {nmt}개 중 {nmg}개.",
      "col.rp_with_weight": "체중 있음", "col.rp_no_weight": "체중 없음", "col.rp_shown": "표시된 점",
      "col.rp_levels": "참고수준"
    }
  };
  var KINDS = {"CT": null, "NM": "rp.kind.nm", "CT+NM": "rp.kind.ctnm", "other": "rp.kind.other"};
  var n = window.nmdose;

  function run() {
    var data = JSON.parse(document.body.getAttribute("data-page-data") || "{}");
    var form = document.getElementById("rp-filters");
    var annualForm = document.getElementById("rp-annual-form");
    var errorBox = document.getElementById("rp-error");
    var workloadRows = [];

    function fail(err) {
      errorBox.hidden = false;
      errorBox.replaceChildren(n.errorText(err));
    }

    function params() {
      var p = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (String(value).trim() !== "") p.set(key, String(value).trim());
      });
      return p;
    }

    // the standard names in use (GET /api/names/in-use), asked on the field's first focus
    var namesAsked = false;
    document.getElementById("rp-standard-name").addEventListener("focus", function () {
      if (namesAsked) return;
      namesAsked = true;
      n.api("names/in-use").then(function (d) {
        var list = document.getElementById("rp-standard-names");
        d.rows.forEach(function (r) {
          var o = document.createElement("option");
          o.value = r.standard_name;
          list.appendChild(o);
        });
      }).catch(function () { namesAsked = false; });
    });

    function without(p, keys) {
      var q = new URLSearchParams(p);
      keys.forEach(function (k) { q.delete(k); });
      return q;
    }

    function groupText(r) {
      if (r.group === "") return n.label("rp.unknown");
      return r.group;
    }

    function statusCell(r) {
      return r.level_status ? n.label("rp.status." + r.level_status) : "";
    }

    function flagCell(r) {
      if (r.level === null || r.level === undefined) return n.label("rp.no_level");
      var el = n.label(r.above ? "rp.above" : "rp.below");
      if (r.above) el.className = "warning";
      return el;
    }

    var LEVEL_COLUMNS = [
      ["group", "col.rp_group", groupText], ["scanner", "col.rp_scanner"], ["year", "col.rp_year"],
      ["n", "col.rp_n"], ["median", "col.rp_median"], ["p75", "col.rp_p75"], ["level", "col.rp_level"],
      ["level_name", "col.rp_level_name"], ["level_status", "col.rp_level_status", statusCell],
      ["level_source", "col.rp_level_source"], ["level_n", "col.rp_level_n"], ["ratio", "col.rp_ratio"],
      ["above", "col.rp_flag", flagCell]];

    function showLevels(d) {
      n.table("rp-levels-table", d.rows, LEVEL_COLUMNS, "rp.empty");
    }

    // Trends: Chart.js category axis with every period of the range (no date adapter is vendored), a line per
    // group, a gap where a group has no value in a period.
    function showTrends(d) {
      var labels = d.periods.map(function (p) { return p.period; });
      var groups = [];
      d.rows.forEach(function (r) { if (groups.indexOf(r.group) < 0) groups.push(r.group); });
      var datasets = groups.map(function (g, i) {
        var by = {};
        d.rows.forEach(function (r) { if (r.group === g) by[r.period] = r; });
        return {label: g === "" ? n.t("rp.unknown") : g, borderColor: n.colors[i % n.colors.length],
                backgroundColor: n.colors[i % n.colors.length], spanGaps: false,
                data: labels.map(function (l) { return by[l] ? by[l].median : null; }),
                counts: labels.map(function (l) { return by[l] ? by[l].n : 0; })};
      });
      n.chart("rp-trend-chart", {type: "line", data: {labels: labels, datasets: datasets}, options: {
        scales: {y: {beginAtZero: true, title: {display: true, text: d.unit}}},
        plugins: {tooltip: {callbacks: {label: function (item) {
          return item.dataset.label + ": " + n.fmt(item.raw) + " " + d.unit + " (N " +
            item.dataset.counts[item.dataIndex] + ")";
        }}}}}});
      n.table("rp-trend-table", d.rows, [["period", "col.rp_period"], ["group", "col.rp_group", groupText],
        ["n", "col.rp_n"], ["median", "col.rp_median"]], "rp.empty");
    }

    function showHistogram(d) {
      var edges = {};
      d.rows.forEach(function (r) { edges[r.bin] = [r.lo, r.hi]; });
      var bins = Object.keys(edges).map(Number).sort(function (a, b) { return a - b; });
      var labels = bins.map(function (b) { return n.fmt(edges[b][0]) + "–" + n.fmt(edges[b][1]); });
      var groups = [];
      d.rows.forEach(function (r) { if (groups.indexOf(r.group) < 0) groups.push(r.group); });
      var datasets = groups.map(function (g, i) {
        var by = {};
        d.rows.forEach(function (r) { if (r.group === g) by[r.bin] = r.n; });
        return {label: g === "" ? n.t("rp.unknown") : g, backgroundColor: n.colors[i % n.colors.length],
                data: bins.map(function (b) { return by[b] || 0; })};
      });
      n.chart("rp-hist-chart", {type: "bar", data: {labels: labels, datasets: datasets}, options: {
        scales: {x: {title: {display: true, text: d.unit}}, y: {beginAtZero: true}}}});
    }

    // Patient size: a scatter per kind (CT: CTDIvol or DLP, NM: activity) against weight, a dataset and colour
    // per group, and a dashed line per reference level that matches the group (MBq/kg: level × weight; a fixed
    // level: horizontal), named in the legend.
    var sizeData = null;

    function sizeGroupName(g) {
      return g.group === "" ? n.t("rp.unknown") : g.group;
    }

    function levelText(g, lv) {
      return sizeGroupName(g) + " – " + n.t("rp.size_level") + " " + n.fmt(lv.value) + " " + lv.unit + " (" +
        n.t("rp.status." + lv.status) + (lv.conditional ? ", " + n.t("rp.size_part") : "") + ")";
    }

    function sizeChart(kind) {
      if (!sizeData) return;
      var part = kind === "CT" ? sizeData.ct : sizeData.nm;
      var id = kind === "CT" ? "rp-size-ct-chart" : "rp-size-nm-chart";
      var chosen = document.getElementById(kind === "CT" ? "rp-size-ct-group" : "rp-size-nm-group").value;
      var yKey = kind === "CT" ? document.getElementById("rp-size-measure").value : "activity_mbq";
      var yTitle = {ctdivol_mgy: "rp.m.ctdivol", dlp_mgycm: "rp.m.dlp", activity_mbq: "rp.m.activity"}[yKey];
      var points = sizeData.rows.filter(function (r) {
        return r.kind === kind && r[yKey] !== null && (!chosen || r.group === chosen);
      });
      var xs = points.map(function (r) { return r.weight_kg; });
      var lo = xs.length ? Math.min.apply(null, xs) : 0;
      var hi = xs.length ? Math.max.apply(null, xs) : 100;
      var datasets = [];
      var lines = [];
      part.groups.forEach(function (g, i) {
        if (chosen && g.group !== chosen) return;
        var color = n.colors[i % n.colors.length];
        datasets.push({label: sizeGroupName(g), backgroundColor: color, borderColor: color,
                       data: points.filter(function (r) { return r.group === g.group; })
                         .map(function (r) { return {x: r.weight_kg, y: r[yKey]}; })});
        g.levels.forEach(function (lv) {
          var perKg = lv.quantity === "activity_mbq_per_kg";
          if (kind === "CT" ? lv.quantity !== yKey : lv.quantity !== "activity_mbq" && !perKg) return;
          lines.push({type: "line", label: levelText(g, lv), level: true, borderColor: color, backgroundColor: color,
                      borderDash: [6, 4], borderWidth: 2, pointRadius: 0, fill: false,
                      data: [lo, hi].map(function (x) { return {x: x, y: perKg ? lv.value * x : lv.value}; })});
        });
      });
      var c = n.chart(id, {type: "scatter", data: {datasets: datasets.concat(lines)}, options: {
        scales: {x: {type: "linear", title: {display: true, text: n.t("rp.size_weight")}},
                 y: {beginAtZero: true, title: {display: true, text: n.t(yTitle)}}}}});
      var canvas = document.getElementById(id);
      canvas.setAttribute("data-datasets", String(datasets.length));
      canvas.setAttribute("data-level-lines", String(lines.length));
      c.relabel = function () { sizeChart(kind); };  // labels and axis titles in the language now chosen
    }

    function sizeOptions(selectId, groups) {
      var select = document.getElementById(selectId);
      var keep = select.value;
      while (select.options.length > 1) select.remove(1);
      groups.forEach(function (g) {
        var o = document.createElement("option");
        o.value = g.group;
        o.textContent = sizeGroupName(g) + " (N " + g.n + ")";
        select.appendChild(o);
      });
      select.value = groups.some(function (g) { return g.group === keep; }) ? keep : "";
    }

    function showSize(d) {
      sizeData = d;
      sizeOptions("rp-size-ct-group", d.ct.groups);
      sizeOptions("rp-size-nm-group", d.nm.groups);
      n.setLabel(document.getElementById("rp-size-missing"), "rp.size_missing", {
        ct: d.ct.no_weight_studies, nm: d.nm.no_weight_studies, ctg: d.ct.groups.length, ctt: d.ct.groups_total,
        nmg: d.nm.groups.length, nmt: d.nm.groups_total});
      sizeChart("CT");
      sizeChart("NM");
      n.table("rp-size-table", d.ct.groups.concat(d.nm.groups), [
        ["kind", "col.rp_kind", function (g) { return g.kind === "CT" ? "CT" : n.label("rp.kind.nm"); }],
        ["group", "col.rp_group", sizeGroupName], ["n", "col.rp_n"], ["with_weight", "col.rp_with_weight"],
        ["no_weight", "col.rp_no_weight"], ["shown", "col.rp_shown"], ["levels", "col.rp_levels", function (g) {
          return g.levels.map(function (lv) { return lv.name + ": " + n.fmt(lv.value) + " " + lv.unit; }).join("; ");
        }]], "rp.empty");
    }

    // The heat table: weekday rows, hour columns (and the studies without a time), darker = more studies.
    function showWorkload() {
      var kind = document.getElementById("rp-kind").value;
      var counts = {};
      var top = 0;
      var unknownHour = false;
      workloadRows.forEach(function (r) {
        if (kind && r.kind !== kind) return;
        var h = r.hour === null ? "x" : r.hour;
        if (h === "x") unknownHour = true;
        var key = r.weekday + ":" + h;
        counts[key] = (counts[key] || 0) + r.n;
        top = Math.max(top, counts[key]);
      });
      var hours = [];
      for (var h = 0; h < 24; h++) hours.push(h);
      if (unknownHour) hours.push("x");
      var rows = [1, 2, 3, 4, 5, 6, 7].map(function (wd) { return {weekday: wd}; });
      var columns = [["weekday", "col.rp_weekday", function (r) { return n.label("rp.wd." + r.weekday); }]];
      hours.forEach(function (hr) {
        columns.push([String(hr), hr === "x" ? "rp.hour_unknown" : String(hr).padStart(2, "0"), function (r) {
          var v = counts[r.weekday + ":" + hr] || 0;
          return v ? String(v) : "";
        }]);
      });
      columns.push(["total", "rp.total", function (r) {
        var sum = 0;
        hours.forEach(function (hr) { sum += counts[r.weekday + ":" + hr] || 0; });
        return String(sum);
      }]);
      n.table("rp-workload-table", rows, columns);
      var head = document.querySelectorAll("#rp-workload-table thead th");
      head.forEach(function (th, i) {  // the translated headers follow the language toggle
        var key = columns[i][1];
        if (key.indexOf("rp.") === 0 || key.indexOf("col.") === 0) th.setAttribute("data-i18n", key);
      });
      document.querySelectorAll("#rp-workload-table tbody tr").forEach(function (tr, ri) {
        hours.forEach(function (hr, hi) {
          var v = counts[rows[ri].weekday + ":" + hr] || 0;
          var cell = tr.cells[hi + 1];
          if (v && top) cell.style.backgroundColor = "rgba(31, 59, 87, " + (0.1 + 0.8 * v / top).toFixed(2) + ")";
          if (v && top && v / top > 0.5) cell.style.color = "#fff";
        });
      });
    }

    function kindCell(r) {
      return KINDS[r.kind] ? n.label(KINDS[r.kind]) : r.kind;
    }

    function showAnnual(d) {
      n.setLabel(document.getElementById("rp-annual-title"), "rp.annual_year", {year: d.year});
      n.setLabel(document.getElementById("rp-generated"), "rp.generated", {time: d.generated});
      n.table("rp-annual-levels", d.rows, [["measure", "col.rp_measure", function (r) {
        return n.label("rp.m." + r.measure);
      }]].concat(LEVEL_COLUMNS.filter(function (c) { return c[0] !== "year" && c[0] !== "level_n"; })), "rp.empty");
      n.table("rp-annual-protocols", d.protocols, [["protocol", "col.rp_protocol"], ["n", "col.rp_n"],
        ["ctdivol_median", "col.rp_ctdivol_median"], ["ctdivol_p75", "col.rp_ctdivol_p75"],
        ["dlp_median", "col.rp_dlp_median"], ["dlp_p75", "col.rp_dlp_p75"]], "rp.empty");
      n.table("rp-annual-agents", d.agents, [["agent", "col.rp_agent"], ["n", "col.rp_n"],
        ["activity_median", "col.rp_activity_median"], ["activity_p75", "col.rp_activity_p75"],
        ["per_kg_median", "col.rp_per_kg_median"]], "rp.empty");
      var per = {};
      d.workload.forEach(function (r) {
        var key = r.kind + ":" + r.weekday;
        per[key] = per[key] || {kind: r.kind, weekday: r.weekday, n: 0};
        per[key].n += r.n;
      });
      var rows = Object.keys(per).map(function (k) { return per[k]; });
      rows.sort(function (a, b) { return a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : a.weekday - b.weekday; });
      n.table("rp-annual-workload", rows, [["kind", "col.rp_kind", kindCell],
        ["weekday", "col.rp_weekday", function (r) { return n.label("rp.wd." + r.weekday); }],
        ["n", "col.rp_studies"]], "rp.empty");
    }

    function loadAnnual(year) {
      document.getElementById("rp-annual-xlsx").setAttribute("href",
        n.root + "api/dose/report/annual?year=" + encodeURIComponent(year) + "&format=xlsx");
      document.getElementById("rp-annual-print").setAttribute("href",
        n.root + "ui/report/print?year=" + encodeURIComponent(year));
      annualForm.elements.year.value = year;
      return n.api("dose/report/annual", {year: year}).then(showAnnual, fail);
    }

    function load() {
      var p = params();
      errorBox.hidden = true;
      var levelParams = without(p, ["period"]);
      ["csv", "xlsx"].forEach(function (f) {
        var q = new URLSearchParams(levelParams);
        q.set("format", f);
        document.getElementById("rp-levels-" + f).setAttribute("href",
          n.root + "api/dose/report/levels?" + q.toString());
      });
      n.api("dose/report/levels", levelParams).then(showLevels, fail);
      n.api("dose/report/trends", p).then(showTrends, fail);
      n.api("dose/report/histogram", levelParams).then(showHistogram, fail);
      var sizeParams = without(p, ["measure", "group", "period"]);
      var g = p.get("group");
      if (g === "description" || g === "standard_name") sizeParams.set("group", g);
      n.api("dose/report/patient-size", sizeParams).then(showSize, fail);
      n.api("dose/report/workload", without(p, ["measure", "group", "period"])).then(function (d) {
        workloadRows = d.rows;
        showWorkload();
      }, fail);
    }

    var year = Number(new URLSearchParams(window.location.search).get("year")) || new Date().getFullYear() - 1;
    document.getElementById("rp-print").addEventListener("click", function () { window.print(); });
    if (data.print) {  // the print view: the annual report only, no navigation or inputs (nmdose.css)
      document.body.classList.add("rp-print-mode");
      loadAnnual(year);
      return;
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); load(); });
    annualForm.addEventListener("submit", function (e) {
      e.preventDefault();
      loadAnnual(annualForm.elements.year.value);
    });
    document.getElementById("rp-size-measure").addEventListener("change", function () { sizeChart("CT"); });
    document.getElementById("rp-size-ct-group").addEventListener("change", function () { sizeChart("CT"); });
    document.getElementById("rp-size-nm-group").addEventListener("change", function () { sizeChart("NM"); });
    document.getElementById("rp-kind").addEventListener("change", showWorkload);
    load();
    loadAnnual(year);
  }

  n.register("report", I18N, run);
})();
