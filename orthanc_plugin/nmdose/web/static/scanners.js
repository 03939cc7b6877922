// nmdose scanners page (/nmdose/ui/scanners): every scanner from /nmdose/api/scanners with its names seen, a
// display name to edit and a merge (config:write; the server refuses others with 403), and "side by side": one
// measure's box plots and statistics per scanner (/nmdose/api/scanners/side-by-side). On the shared shell:
// nmdose.js's helpers and language (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "nav.scanners": "Scanners",
      "sc.title": "Scanners",
      "sc.hint": "One row per device, found by its Device Observer UID, else manufacturer + model + serial " +
        "number, else manufacturer + model + station name. A new software version or a renamed station does " +
        "not make a second scanner. The statistics and filters use the display name; renaming and merging " +
        "need the config:write permission.",
      "sc.side": "Scanners side by side",
      "sc.f.measure": "Measure", "sc.m.ctdivol": "CTDIvol (mGy)", "sc.m.dlp": "DLP (mGy·cm)",
      "sc.m.ctdivol_study": "CTDIvol per study (mGy)", "sc.m.dlp_study": "DLP per study (mGy·cm)",
      "sc.m.activity": "Activity (MBq)", "sc.m.per_kg": "Activity per kg (MBq/kg)",
      "sc.f.protocol": "Protocol", "sc.f.description": "Description", "sc.f.agent": "Radiopharmaceutical",
      "sc.f.from": "From", "sc.f.to": "To", "sc.apply": "Apply", "sc.csv": "CSV",
      "sc.save": "Save", "sc.merge": "Merge", "sc.unmerge": "Undo merge", "sc.merge_into": "into…",
      "sc.merged_into": "merged into {name}", "sc.renamed": "Scanner {id} renamed to {name}",
      "sc.merged": "Scanner {id} merged into {into}", "sc.unmerged": "Merge of scanner {id} undone",
      "sc.none": "no scanner yet: they appear as dose objects are ingested",
      "sc.no_values": "no value of this measure under these filters",
      "col.sc_id": "Id", "col.sc_display_name": "Display name", "col.sc_manufacturer": "Manufacturer",
      "col.sc_model": "Model", "col.sc_serial": "Serial number", "col.sc_uid": "Device Observer UID",
      "col.sc_stations": "Station names seen", "col.sc_software": "Software versions seen",
      "col.sc_studies": "Studies", "col.sc_first": "First study", "col.sc_last": "Last study",
      "col.sc_merge": "Merge",
      "col.sc_scanner": "Scanner", "col.sc_n": "n", "col.sc_median": "Median", "col.sc_q1": "Q1",
      "col.sc_q3": "Q3", "col.sc_mean": "Mean", "col.sc_p95": "95th percentile", "col.sc_min": "Min",
      "col.sc_max": "Max", "col.sc_outside": "Outside whiskers"
    },
    ko: {
      "nav.scanners": "장비",
      "sc.title": "장비",
      "sc.hint": "장비마다 한 줄: Device Observer UID로, 없으면 제조사 + 모델 + 일련번호로, 그것도 없으면 제조사 + " +
        "모델 + 스테이션 이름으로 찾습니다. 소프트웨어 버전이 바뀌거나 스테이션 이름이 바뀌어도 장비가 둘로 " +
        "나뉘지 않습니다. 통계와 필터는 표시 이름을 씁니다. 이름 변경과 병합에는 config:write 권한이 필요합니다.",
      "sc.side": "장비별 비교",
      "sc.f.measure": "측정값", "sc.m.ctdivol": "CTDIvol (mGy)", "sc.m.dlp": "DLP (mGy·cm)",
      "sc.m.ctdivol_study": "검사당 CTDIvol (mGy)", "sc.m.dlp_study": "검사당 DLP (mGy·cm)",
      "sc.m.activity": "투여 방사능 (MBq)", "sc.m.per_kg": "체중당 방사능 (MBq/kg)",
      "sc.f.protocol": "프로토콜", "sc.f.description": "검사명", "sc.f.agent": "방사성의약품",
      "sc.f.from": "시작일", "sc.f.to": "종료일", "sc.apply": "적용", "sc.csv": "CSV 내보내기",
      "sc.save": "저장", "sc.merge": "병합", "sc.unmerge": "병합 취소", "sc.merge_into": "병합 대상…",
      "sc.merged_into": "{name}에 병합됨", "sc.renamed": "장비 {id}의 이름을 {name}(으)로 바꿨습니다",
      "sc.merged": "장비 {id}를 {into}에 병합했습니다", "sc.unmerged": "장비 {id}의 병합을 취소했습니다",
      "sc.none": "아직 장비가 없습니다: 선량 객체가 들어오면 나타납니다",
      "sc.no_values": "이 필터에 해당하는 값이 없습니다",
      "col.sc_id": "번호", "col.sc_display_name": "표시 이름", "col.sc_manufacturer": "제조사",
      "col.sc_model": "모델", "col.sc_serial": "일련번호", "col.sc_uid": "장치 관찰자 UID",
      "col.sc_stations": "사용된 스테이션 이름", "col.sc_software": "사용된 소프트웨어 버전",
      "col.sc_studies": "검사 수", "col.sc_first": "첫 검사", "col.sc_last": "마지막 검사",
      "col.sc_merge": "병합",
      "col.sc_scanner": "장비", "col.sc_n": "건수", "col.sc_median": "중앙값", "col.sc_q1": "1사분위",
      "col.sc_q3": "3사분위", "col.sc_mean": "평균", "col.sc_p95": "95 백분위", "col.sc_min": "최소",
      "col.sc_max": "최대", "col.sc_outside": "수염 밖"
    }
  };
  var UNITS = {ctdivol: "mGy", dlp: "mGy·cm", ctdivol_study: "mGy", dlp_study: "mGy·cm", activity: "MBq",
    per_kg: "MBq/kg"};
  var STAT_COLUMNS = ["n", "median", "q1", "q3", "mean", "p95", "min", "max", "outside"];
  var n = window.nmdose;

  function run() {
    var errorBox = document.getElementById("scanners-error");
    var done = document.getElementById("scanners-done");
    var form = document.getElementById("side-filters");
    var sideError = document.getElementById("side-error");
    var csv = document.getElementById("side-csv");

    function fail(box) {
      return function (err) { box.hidden = false; box.replaceChildren(n.errorText(err)); };
    }

    function post(path, body) {
      return window.nmdoseFetch(n.root + "api/" + path, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) throw new Error(data.error || r.statusText);
          return data;
        });
      });
    }

    function names(list) {
      var ul = document.createElement("ul");
      ul.className = "names";
      (list || []).forEach(function (x) {
        var li = document.createElement("li");
        li.textContent = x.name + " (" + (x.first || "?") + " – " + (x.last || "?") + ")";
        ul.appendChild(li);
      });
      return ul;
    }

    function button(key, onClick) {
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("data-i18n", key);
      b.textContent = n.t(key);
      b.addEventListener("click", onClick);
      return b;
    }

    function nameCell(r) {
      var span = document.createElement("span");
      var input = document.createElement("input");
      input.value = r.display_name;
      input.maxLength = 200;
      input.name = "display_name";
      input.setAttribute("data-scanner", String(r.scanner_id));
      span.appendChild(input);
      span.appendChild(button("sc.save", function () {
        done.hidden = true;
        post("scanners/" + r.scanner_id + "/rename", {display_name: input.value}).then(function (d) {
          say("sc.renamed", {id: d.scanner_id, name: d.display_name});
        }, fail(errorBox));
      }));
      return span;
    }

    function mergeCell(r, all) {
      var span = document.createElement("span");
      if (r.merged_into) {
        span.appendChild(n.label("sc.merged_into", {name: r.merged_into_name}));
        span.appendChild(button("sc.unmerge", function () {
          post("scanners/" + r.scanner_id + "/merge", {into: null}).then(function (d) {
            say("sc.unmerged", {id: d.scanner_id});
          }, fail(errorBox));
        }));
        return span;
      }
      var select = document.createElement("select");
      select.setAttribute("data-scanner", String(r.scanner_id));
      var first = document.createElement("option");
      first.value = "";
      first.setAttribute("data-i18n", "sc.merge_into");
      first.textContent = n.t("sc.merge_into");
      select.appendChild(first);
      all.forEach(function (o) {
        if (o.scanner_id === r.scanner_id || o.merged_into) return;
        var opt = document.createElement("option");
        opt.value = String(o.scanner_id);
        opt.textContent = o.display_name + " (" + o.scanner_id + ")";
        select.appendChild(opt);
      });
      span.appendChild(select);
      span.appendChild(button("sc.merge", function () {
        if (!select.value) return;
        post("scanners/" + r.scanner_id + "/merge", {into: Number(select.value)}).then(function (d) {
          say("sc.merged", {id: d.scanner_id, into: d.merged_into});
        }, fail(errorBox));
      }));
      return span;
    }

    function say(key, vars) {
      errorBox.hidden = true;
      done.hidden = false;
      n.setLabel(done, key, vars);
      loadScanners();
      loadSide();
    }

    function showScanners(d) {
      var all = d.rows;
      n.table("scanners-table", all, [
        ["scanner_id", "col.sc_id"],
        ["display_name", "col.sc_display_name", nameCell],
        ["manufacturer", "col.sc_manufacturer"],
        ["model_name", "col.sc_model"],
        ["device_serial_number", "col.sc_serial"],
        ["device_observer_uid", "col.sc_uid"],
        ["station_names", "col.sc_stations", function (r) { return names(r.station_names); }],
        ["software_versions", "col.sc_software", function (r) { return names(r.software_versions); }],
        ["studies", "col.sc_studies"],
        ["first_study", "col.sc_first"],
        ["last_study", "col.sc_last"],
        ["merged_into", "col.sc_merge", function (r) { return mergeCell(r, all); }]
      ], "sc.none");
    }

    function loadScanners() {
      n.api("scanners").then(showScanners, fail(errorBox));
    }

    function params() {
      var p = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (String(value).trim() !== "") p.set(key, String(value).trim());
      });
      return p;
    }

    function showSide(measure, d) {
      n.boxChart("side-chart", "scanner", [
        {key: "sc.m." + measure, unit: UNITS[measure], rows: d.rows, color: n.colors[6]}]);
      n.table("side-table", d.rows, [["scanner", "col.sc_scanner"]].concat(STAT_COLUMNS.map(function (c) {
        return [c, "col.sc_" + c];
      })), "sc.no_values");
    }

    var sideGeneration = 0;  // only the newest comparison is drawn: an older, slower answer never overwrites it
    function loadSide() {
      var gen = ++sideGeneration;
      var p = params();
      sideError.hidden = true;
      var exportParams = new URLSearchParams(p);
      exportParams.set("format", "csv");
      csv.setAttribute("href", n.root + "api/scanners/side-by-side?" + exportParams.toString());
      var measure = p.get("measure") || "ctdivol";
      n.api("scanners/side-by-side", p).then(function (d) {
        if (gen === sideGeneration) showSide(measure, d);
      }, function (e) { if (gen === sideGeneration) fail(sideError)(e); });
    }

    form.addEventListener("submit", function (e) { e.preventDefault(); loadSide(); });
    loadScanners();
    loadSide();
  }

  n.register("scanners", I18N, run);
})();
