// nmdose standard-names page (/nmdose/ui/names): the rules that map raw study descriptions, requested procedures,
// acquisition protocols and agents to one standard name (add, edit, delete), the names in use, the unmapped raw
// values grouped by normalised form (tick several, map them to one name), CSV/YAML import and export.
// On the shared shell (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "nav.names": "Standard names",
      "sn.title": "Standard names",
      "sn.hint": "One name for the same examination however each scanner spells it. A rule maps a raw value " +
        "(matched by its normalised form: case, spacing, punctuation, full-width characters, Korean/English " +
        "words) to a standard name, for every scanner or one. Every change names all stored studies at once.",
      "sn.in_use": "Standard names in use", "sn.unnamed": "{n} studies have no standard name yet",
      "sn.rules": "Rules", "sn.f.field": "Field", "sn.f.raw": "Raw value", "sn.f.scanner": "Scanner id (empty: all)",
      "sn.f.name": "Standard name", "sn.add": "Add rule", "sn.save": "Save rule", "sn.cancel": "Cancel",
      "sn.edit": "Edit", "sn.delete": "Delete",
      "sn.field.study_description": "study description", "sn.field.requested_procedure": "requested procedure",
      "sn.field.acquisition_protocol": "acquisition protocol", "sn.field.agent": "radiopharmaceutical",
      "sn.field.all": "all fields", "sn.all_scanners": "all",
      "sn.suggestions": "Suggestions: raw values without a standard name",
      "sn.suggestions_hint": "Grouped by normalised form, most studies first. Tick several, give one standard " +
        "name, and map them at once.",
      "sn.f.map_to": "Map the ticked ones to", "sn.map": "Map",
      "sn.import_export": "Import and export", "sn.f.file": "CSV or YAML file", "sn.import": "Import",
      "sn.export_csv": "Export CSV", "sn.export_yaml": "Export YAML", "sn.apply": "Apply the rules again",
      "sn.import_hint": "CSV columns: field, raw_value, scanner_id (empty: all scanners), standard_name. A file " +
        "with any bad line imports nothing; each problem is listed with its line.",
      "sn.done": "Saved; renamed {studies} studies, {ct_events} CT events, {administrations} administrations",
      "sn.imported": "Imported {rules} rules ({inserted} new, {updated} renamed, {unchanged} unchanged); renamed " +
        "{studies} studies, {ct_events} CT events, {administrations} administrations",
      "sn.need_name": "Give the standard name first", "sn.need_ticks": "Tick at least one suggestion",
      "sn.need_file": "Choose a file first", "sn.no_rules": "no rule yet", "sn.no_suggestions": "every raw value has a standard name",
      "col.sn_field": "Field", "col.sn_raw_value": "Raw value", "col.sn_normalised": "Normalised form",
      "col.sn_scanner": "Scanner", "col.sn_standard_name": "Standard name", "col.sn_updated": "Changed",
      "col.sn_by": "By", "col.sn_actions": "Actions", "col.sn_pick": "Map?", "col.sn_raw_values": "Raw values (studies)",
      "col.sn_studies": "Studies", "col.sn_scanners": "Scanners", "col.sn_ct_events": "CT events",
      "col.sn_administrations": "Administrations", "col.sn_rules": "Rules"
    },
    ko: {
      "nav.names": "표준 검사명",
      "sn.title": "표준 검사명",
      "sn.hint": "장비마다 다르게 적힌 같은 검사에 하나의 이름을 붙입니다. 규칙은 원래 값(정규화한 형태로 비교: 대소문자, " +
        "공백, 문장부호, 전각 문자, 한글/영어 낱말)을 모든 장비 또는 한 장비에 대해 표준 검사명으로 바꿉니다. " +
        "바꿀 때마다 저장된 모든 검사에 한 번에 적용됩니다.",
      "sn.in_use": "사용 중인 표준 검사명", "sn.unnamed": "표준 검사명이 아직 없는 검사 {n}건",
      "sn.rules": "규칙", "sn.f.field": "항목", "sn.f.raw": "원래 값", "sn.f.scanner": "장비 번호 (비우면 전체)",
      "sn.f.name": "표준 검사명", "sn.add": "규칙 추가", "sn.save": "규칙 저장", "sn.cancel": "취소",
      "sn.edit": "수정", "sn.delete": "삭제",
      "sn.field.study_description": "검사명", "sn.field.requested_procedure": "의뢰 검사",
      "sn.field.acquisition_protocol": "촬영 프로토콜", "sn.field.agent": "방사성의약품",
      "sn.field.all": "모든 항목", "sn.all_scanners": "전체",
      "sn.suggestions": "제안: 표준 검사명이 없는 원래 값",
      "sn.suggestions_hint": "정규화한 형태로 묶고 검사가 많은 순서로 보입니다. 여러 개를 선택하고 표준 검사명 하나를 " +
        "적어 한 번에 연결하십시오.",
      "sn.f.map_to": "선택한 값을 연결할 표준 검사명", "sn.map": "연결",
      "sn.import_export": "가져오기와 내보내기", "sn.f.file": "CSV 또는 YAML 파일", "sn.import": "가져오기",
      "sn.export_csv": "CSV 내보내기", "sn.export_yaml": "YAML 내보내기", "sn.apply": "규칙 다시 적용",
      "sn.import_hint": "CSV 열: field, raw_value, scanner_id (비우면 모든 장비), standard_name. 잘못된 줄이 하나라도 " +
        "있으면 아무것도 가져오지 않고, 문제마다 줄 번호를 보여 줍니다.",
      "sn.done": "저장했습니다; 검사 {studies}건, CT 조사 {ct_events}건, 투여 {administrations}건의 이름을 바꿈",
      "sn.imported": "규칙 {rules}개를 가져왔습니다 (새 규칙 {inserted}, 이름 바뀜 {updated}, 그대로 {unchanged}); " +
        "검사 {studies}건, CT 조사 {ct_events}건, 투여 {administrations}건의 이름을 바꿈",
      "sn.need_name": "표준 검사명을 먼저 적으십시오", "sn.need_ticks": "제안을 하나 이상 선택하십시오",
      "sn.need_file": "파일을 먼저 고르십시오", "sn.no_rules": "아직 규칙이 없습니다", "sn.no_suggestions": "모든 원래 값에 표준 검사명이 있습니다",
      "col.sn_field": "항목", "col.sn_raw_value": "원래 값", "col.sn_normalised": "정규화한 형태",
      "col.sn_scanner": "장비", "col.sn_standard_name": "표준 검사명", "col.sn_updated": "바꾼 때",
      "col.sn_by": "바꾼 사람", "col.sn_actions": "작업", "col.sn_pick": "연결?", "col.sn_raw_values": "원래 값 (검사 수)",
      "col.sn_studies": "검사 수", "col.sn_scanners": "장비", "col.sn_ct_events": "CT 조사",
      "col.sn_administrations": "투여", "col.sn_rules": "규칙"
    }
  };
  var n = window.nmdose;

  function run() {
    var errorBox = document.getElementById("sn-error");
    var status = document.getElementById("sn-status");
    var ruleForm = document.getElementById("sn-rule-form");
    var saveButton = document.getElementById("sn-save");
    var cancelButton = document.getElementById("sn-cancel");
    var importErrors = document.getElementById("sn-import-errors");
    var editing = null;  // the id of the rule the form edits, or null (the form adds one)
    var suggestions = [];

    function fail(err) {
      errorBox.hidden = false;
      errorBox.replaceChildren(n.errorText(err));
    }

    function clear() {
      errorBox.hidden = true;
      status.removeAttribute("data-i18n");  // else the language toggle would bring the old message back
      status.removeAttribute("data-i18n-vars");
      status.textContent = "";
      importErrors.replaceChildren();
    }

    // A state-changing call: JSON body, the token in keycloak mode (nmdoseFetch); rejects with the server's
    // message, and `errors` (one per bad line) when it gave them.
    function send(method, path, body) {
      return window.nmdoseFetch(n.root + "api/" + path, {
        method: method, credentials: "same-origin", headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body || {})
      }).then(function (r) {
        return r.json().then(function (d) {
          if (!r.ok) { var e = new Error(d.error || r.statusText); e.errors = d.errors || []; throw e; }
          return d;
        });
      });
    }

    function failWithLines(err) {
      fail(err);
      importErrors.replaceChildren();
      (err.errors || []).forEach(function (line) {
        var li = document.createElement("li");
        li.textContent = line;
        importErrors.appendChild(li);
      });
    }

    function fieldLabel(v) { return n.label("sn.field." + v); }

    function done(d) {
      var a = d.applied || {};
      var vars = {studies: a.studies, ct_events: a.ct_events, administrations: a.administrations,
                  rules: d.rules, inserted: d.inserted, updated: d.updated, unchanged: d.unchanged};
      n.setLabel(status, d.rules === undefined ? "sn.done" : "sn.imported", vars);
      return load();
    }

    function resetForm() {
      editing = null;
      ruleForm.reset();
      n.setLabel(saveButton, "sn.add");
      cancelButton.hidden = true;
    }

    function edit(rule) {
      editing = rule.id;
      ruleForm.elements.field.value = rule.field;
      ruleForm.elements.raw_value.value = rule.raw_value;
      ruleForm.elements.scanner_id.value = rule.scanner_id === null ? "" : String(rule.scanner_id);
      ruleForm.elements.standard_name.value = rule.standard_name;
      n.setLabel(saveButton, "sn.save");
      cancelButton.hidden = false;
      ruleForm.elements.raw_value.focus();
    }

    function button(key, onClick) {
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("data-i18n", key);
      b.textContent = n.t(key);
      b.addEventListener("click", onClick);
      return b;
    }

    function showRules(d) {
      n.table("sn-rules-table", d.rows, [
        ["standard_name", "col.sn_standard_name"],
        ["field", "col.sn_field", function (r) { return fieldLabel(r.field); }],
        ["raw_value", "col.sn_raw_value"], ["normalised", "col.sn_normalised"],
        ["scanner_id", "col.sn_scanner", function (r) {
          return r.scanner_id === null ? n.label("sn.all_scanners") : String(r.scanner_id);
        }],
        ["updated_by", "col.sn_by"], ["updated_at", "col.sn_updated", function (r) {
          return String(r.updated_at || "").slice(0, 19).replace("T", " ");
        }],
        ["id", "col.sn_actions", function (r) {
          var span = document.createElement("span");
          span.appendChild(button("sn.edit", function () { edit(r); }));
          span.appendChild(document.createTextNode(" "));
          var del = button("sn.delete", function () {
            clear();
            send("DELETE", "names/rules/" + encodeURIComponent(r.id)).then(done, fail);
          });
          del.className = "danger";
          span.appendChild(del);
          return span;
        }]
      ], "sn.no_rules");
    }

    function showNames(d) {
      n.setLabel(document.getElementById("sn-unnamed"), "sn.unnamed", {n: d.studies_without_name});
      n.table("sn-names-table", d.rows, [["standard_name", "col.sn_standard_name"], ["studies", "col.sn_studies"],
        ["ct_events", "col.sn_ct_events"], ["administrations", "col.sn_administrations"], ["rules", "col.sn_rules"]]);
      var list = document.getElementById("sn-name-choices");
      list.replaceChildren();
      d.rows.forEach(function (r) {
        var o = document.createElement("option");
        o.value = r.standard_name;
        list.appendChild(o);
      });
    }

    function showSuggestions(d) {
      suggestions = d.rows;
      n.table("sn-suggestions-table", d.rows, [
        ["pick", "col.sn_pick", function (r) {
          var box = document.createElement("input");
          box.type = "checkbox";
          box.className = "sn-pick";
          box.value = String(suggestions.indexOf(r));
          return box;
        }],
        ["field", "col.sn_field", function (r) { return fieldLabel(r.field); }],
        ["normalised", "col.sn_normalised"],
        ["raw_values", "col.sn_raw_values", function (r) {
          return r.raw_values.map(function (v) { return v.raw_value + " (" + v.studies + ")"; }).join(", ");
        }],
        ["studies", "col.sn_studies"],
        ["scanner_ids", "col.sn_scanners", function (r) { return r.scanner_ids.join(", "); }]
      ], "sn.no_suggestions");
    }

    function loadSuggestions() {
      var field = document.getElementById("sn-suggest-field").value;
      return n.api("names/suggestions", field ? {field: field} : {}).then(showSuggestions, fail);
    }

    function load() {
      return Promise.all([
        n.api("names/rules").then(showRules, fail),
        n.api("names/in-use").then(showNames, fail),
        loadSuggestions()
      ]);
    }

    ruleForm.addEventListener("submit", function (e) {
      e.preventDefault();
      clear();
      var el = ruleForm.elements;
      var body = {field: el.field.value, raw_value: el.raw_value.value, standard_name: el.standard_name.value,
                  scanner_id: el.scanner_id.value === "" ? null : Number(el.scanner_id.value)};
      var call = editing === null ? send("POST", "names/rules", body)
        : send("PUT", "names/rules/" + encodeURIComponent(editing), body);
      call.then(function (d) { resetForm(); return done(d); }, fail);
    });
    cancelButton.addEventListener("click", resetForm);

    document.getElementById("sn-suggest-field").addEventListener("change", function () { loadSuggestions(); });
    document.getElementById("sn-map-form").addEventListener("submit", function (e) {
      e.preventDefault();
      clear();
      var name = document.getElementById("sn-map-name").value.trim();
      var picked = Array.prototype.slice.call(document.querySelectorAll("#sn-suggestions-table .sn-pick:checked"));
      if (!name) { n.setLabel(status, "sn.need_name"); return; }
      if (!picked.length) { n.setLabel(status, "sn.need_ticks"); return; }
      var items = [];
      picked.forEach(function (box) {
        var s = suggestions[Number(box.value)];
        // every raw spelling of the group maps through its normalised form: one item per group is enough
        items.push({field: s.field, raw_value: s.raw_values[0].raw_value});
      });
      send("POST", "names/map", {standard_name: name, items: items}).then(function (d) {
        document.getElementById("sn-map-name").value = "";
        return done(Object.assign({}, d, {rules: undefined}));
      }, failWithLines);
    });

    document.getElementById("sn-import-form").addEventListener("submit", function (e) {
      e.preventDefault();
      clear();
      var file = document.getElementById("sn-file").files[0];
      if (!file) { n.setLabel(status, "sn.need_file"); return; }
      var format = /\.ya?ml$/i.test(file.name) ? "yaml" : "csv";
      file.text().then(function (text) {
        return send("POST", "names/import", {format: format, text: text});
      }).then(done, failWithLines);
    });
    document.getElementById("sn-apply").addEventListener("click", function () {
      clear();
      send("POST", "names/apply", {}).then(done, fail);
    });
    load();
  }

  n.register("names", I18N, run);
})();
