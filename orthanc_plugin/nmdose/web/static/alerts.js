// nmdose dose alerts page (/nmdose/ui/alerts): the alerts fired (/nmdose/api/alerts/firings, filtered and paged)
// with an acknowledge form each (POST .../ack: alerts:ack), and the rules (/nmdose/api/alerts/rules; create or
// replace, delete: config:write, the server refuses others with 403). On the shared shell: nmdose.js's helpers
// and language (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "nav.alerts": "Alerts",
      "al.title": "Dose alerts",
      "al.hint": "Alerts fired by the rules below when a dose object arrives: once per study and rule (once per " +
        "patient and window end for the patient rules). Studies by StudyInstanceUID, patients only by pseudonym. " +
        "Acknowledging needs the alerts:ack permission, changing rules config:write.",
      "al.f.state": "State", "al.state.open": "open", "al.state.acknowledged": "acknowledged", "al.state.all": "all",
      "al.f.rule": "Rule", "al.any": "any", "al.f.from": "From", "al.f.to": "To", "al.apply": "Apply", "al.csv": "CSV",
      "al.prev": "Previous", "al.next": "Next",
      "al.summary": "alerts {first}–{last} of {total}", "al.none": "no alert",
      "al.ack": "Acknowledge", "al.comment": "comment", "al.acked": "{by}, {at}", "al.done": "Alert {id} acknowledged",
      "al.sent": "{sent} of {n} sent", "al.failed": "{n} failed", "al.no_delivery": "not sent (no channel)",
      "al.rules": "Rules", "al.new_rule": "New rule (or replace the one of the same name)",
      "al.r.name": "Name", "al.r.kind": "Kind", "al.r.threshold": "Threshold", "al.r.factor": "Factor",
      "al.r.band_low": "Band low", "al.r.band_high": "Band high", "al.r.max_studies": "Max studies",
      "al.r.window_days": "Window (days)", "al.r.standard_name": "Standard name", "al.r.agent": "Agent (pattern)",
      "al.r.email_to": "E-mail to (comma-separated)", "al.r.webhook_url": "Webhook URL",
      "al.r.digest": "Digest (hourly)", "al.digest": "(digest)", "al.r.save": "Save rule", "al.r.saved": "Rule {id} saved",
      "al.r.delete": "Delete", "al.r.deleted": "Rule {id} deleted", "al.r.none": "no rule yet", "al.yes": "yes",
      "al.no": "no",
      "al.kind.ctdivol_above": "CTDIvol above a value", "al.kind.dlp_above": "DLP per study above a value",
      "al.kind.ctdivol_level": "CTDIvol above factor × reference level",
      "al.kind.dlp_level": "DLP above factor × reference level", "al.kind.activity_band": "Activity outside a band",
      "al.kind.activity_per_kg_band": "Activity per kg outside a band",
      "al.kind.effective_dose_above": "Effective dose per study above a value",
      "al.kind.dose_check": "The scanner's dose-check alert (RDSR)",
      "al.kind.patient_studies": "One patient: more than N studies in a window",
      "al.kind.patient_dose": "One patient: more than M mSv in a window",
      "al.q.ctdivol_mgy": "CTDIvol (mGy)", "al.q.dlp_mgycm": "DLP (mGy·cm)", "al.q.activity_mbq": "Activity (MBq)",
      "al.q.activity_per_kg_mbq": "Activity per kg (MBq/kg)", "al.q.effective_dose_msv": "Effective dose (mSv)",
      "al.q.dose_check": "Scanner dose check", "al.q.studies": "Studies in the window",
      "al.check": "proceeded by {who}: {why}",
      "col.al_fired_at": "Fired", "col.al_rule_name": "Rule", "col.al_study": "Study", "col.al_study_date": "Study date",
      "col.al_study_description": "Description", "col.al_quantity": "Quantity", "col.al_measured": "Value",
      "col.al_limit_value": "Limit", "col.al_level": "Reference level", "col.al_deliveries": "Sent",
      "col.al_ack": "Acknowledged",
      "col.al_r_id": "Id", "col.al_r_name": "Name", "col.al_r_kind": "Kind", "col.al_r_limits": "Limits",
      "col.al_r_scope": "Scope", "col.al_r_channels": "Channels", "col.al_r_enabled": "Enabled",
      "col.al_r_firings": "Alerts (open)", "col.al_r_delete": "Delete"
    },
    ko: {
      "nav.alerts": "선량 경보",
      "al.title": "선량 경보",
      "al.hint": "선량 객체가 도착할 때 아래 규칙이 발생시킨 경보: 검사와 규칙마다 한 번 (환자 규칙은 환자와 기간 끝마다 " +
        "한 번). 검사는 StudyInstanceUID로, 환자는 가명으로만 표시됩니다. 확인에는 alerts:ack 권한, 규칙 변경에는 " +
        "config:write 권한이 필요합니다.",
      "al.f.state": "상태", "al.state.open": "미확인", "al.state.acknowledged": "확인됨", "al.state.all": "전체",
      "al.f.rule": "규칙", "al.any": "전체", "al.f.from": "시작일", "al.f.to": "종료일", "al.apply": "적용", "al.csv": "CSV",
      "al.prev": "이전", "al.next": "다음",
      "al.summary": "경보 {total}건 중 {first}–{last}", "al.none": "경보 없음",
      "al.ack": "확인", "al.comment": "의견", "al.acked": "{by}, {at}", "al.done": "경보 {id} 확인됨",
      "al.sent": "{n}건 중 {sent}건 발송", "al.failed": "{n}건 실패", "al.no_delivery": "발송 안 함 (채널 없음)",
      "al.rules": "규칙", "al.new_rule": "새 규칙 (같은 이름의 규칙은 대체)",
      "al.r.name": "이름", "al.r.kind": "종류", "al.r.threshold": "기준값", "al.r.factor": "배수",
      "al.r.band_low": "범위 하한", "al.r.band_high": "범위 상한", "al.r.max_studies": "최대 검사 수",
      "al.r.window_days": "기간 (일)", "al.r.standard_name": "표준 검사명", "al.r.agent": "방사성의약품 (패턴)",
      "al.r.email_to": "받는 이메일 (쉼표로 구분)", "al.r.webhook_url": "웹훅 URL",
      "al.r.digest": "모아 보내기 (매시간)", "al.digest": "(모아 보내기)", "al.r.save": "규칙 저장", "al.r.saved": "규칙 {id} 저장됨",
      "al.r.delete": "삭제", "al.r.deleted": "규칙 {id} 삭제됨", "al.r.none": "규칙 없음", "al.yes": "예",
      "al.no": "아니오",
      "al.kind.ctdivol_above": "CTDIvol 기준값 초과", "al.kind.dlp_above": "검사당 DLP 기준값 초과",
      "al.kind.ctdivol_level": "CTDIvol 진단참고수준 × 배수 초과",
      "al.kind.dlp_level": "DLP 진단참고수준 × 배수 초과", "al.kind.activity_band": "투여 방사능 범위 밖",
      "al.kind.activity_per_kg_band": "체중당 투여 방사능 범위 밖",
      "al.kind.effective_dose_above": "검사당 유효선량 기준값 초과",
      "al.kind.dose_check": "장비 자체 선량 점검 경보 (RDSR)",
      "al.kind.patient_studies": "한 환자: 기간 내 검사 N건 초과",
      "al.kind.patient_dose": "한 환자: 기간 내 M mSv 초과",
      "al.q.ctdivol_mgy": "CTDIvol (mGy)", "al.q.dlp_mgycm": "DLP (mGy·cm)", "al.q.activity_mbq": "투여 방사능 (MBq)",
      "al.q.activity_per_kg_mbq": "체중당 방사능 (MBq/kg)", "al.q.effective_dose_msv": "유효선량 (mSv)",
      "al.q.dose_check": "장비 선량 점검", "al.q.studies": "기간 내 검사 수",
      "al.check": "진행자 {who}: {why}",
      "col.al_fired_at": "발생 시각", "col.al_rule_name": "규칙", "col.al_study": "검사", "col.al_study_date": "검사일",
      "col.al_study_description": "검사명", "col.al_quantity": "항목", "col.al_measured": "값",
      "col.al_limit_value": "기준", "col.al_level": "진단참고수준", "col.al_deliveries": "발송",
      "col.al_ack": "확인",
      "col.al_r_id": "번호", "col.al_r_name": "이름", "col.al_r_kind": "종류", "col.al_r_limits": "기준",
      "col.al_r_scope": "범위", "col.al_r_channels": "발송 채널", "col.al_r_enabled": "사용",
      "col.al_r_firings": "경보 (미확인)", "col.al_r_delete": "삭제"
    }
  };
  var n = window.nmdose;
  var PAGE = 50;

  function run() {
    var form = document.getElementById("alerts-filters");
    var errorBox = document.getElementById("alerts-error");
    var summary = document.getElementById("alerts-summary");
    var csv = document.getElementById("alerts-csv");
    var ruleSelect = form.querySelector("select[name=rule_id]");
    var ruleForm = document.getElementById("rule-form");
    var ruleMessage = document.getElementById("rule-message");
    var offset = 0;

    function fail(err) {
      errorBox.hidden = false;
      errorBox.replaceChildren(n.errorText(err));
    }

    function send(method, path, body) {
      return window.nmdoseFetch(n.root + "api/" + path, {
        method: method, credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) throw new Error(data.error || r.statusText);
          return data;
        });
      });
    }

    function params() {
      var p = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (String(value).trim() !== "") p.set(key, String(value).trim());
      });
      return p;
    }

    function ackCell(r) {
      if (r.acknowledged_at) {
        var span = n.label("al.acked", {by: r.acknowledged_by, at: String(r.acknowledged_at).slice(0, 16)});
        if (r.ack_comment) span.title = r.ack_comment;
        return span;
      }
      var f = document.createElement("form");
      f.className = "ack";
      var input = document.createElement("input");
      input.name = "comment";
      input.maxLength = 2000;
      input.setAttribute("data-i18n-title", "al.comment");
      input.title = n.t("al.comment");
      var button = document.createElement("button");
      button.type = "submit";
      button.appendChild(n.label("al.ack"));
      f.appendChild(input);
      f.appendChild(button);
      f.addEventListener("submit", function (e) {
        e.preventDefault();
        errorBox.hidden = true;
        send("POST", "alerts/firings/" + r.id + "/ack", {comment: input.value}).then(function () {
          n.setLabel(summary, "al.done", {id: r.id});
          load();
        }, fail);
      });
      return f;
    }

    function deliveries(r) {
      if (!r.deliveries) return n.label("al.no_delivery");
      var span = n.label("al.sent", {sent: r.deliveries_sent, n: r.deliveries});
      if (r.deliveries_failed) {
        span.appendChild(document.createTextNode(" ⚠ "));
        span.appendChild(n.label("al.failed", {n: r.deliveries_failed}));
      }
      if (r.delivery_error) span.title = r.delivery_error;
      return span;
    }

    function quantity(r) {
      var span = n.label("al.q." + r.quantity);
      ((r.details || {}).events || []).forEach(function (e) {
        span.appendChild(document.createTextNode(" · "));
        span.appendChild(n.label("al.check", {who: e.alert_person_name || "-",
          why: e.alert_reason_for_proceeding || e.notification_reason_for_proceeding || "-"}));
      });
      return span;
    }

    var COLUMNS = [
      ["fired_at", "col.al_fired_at", function (r) { return String(r.fired_at).slice(0, 16); }],
      ["rule_name", "col.al_rule_name"],
      ["study", "col.al_study", function (r) { return n.studyLink(r.study_instance_uid); }],
      ["study_date", "col.al_study_date"],
      ["study_description", "col.al_study_description"],
      ["quantity", "col.al_quantity", quantity],
      ["measured", "col.al_measured", function (r) { return n.fmt(r.measured); }],
      ["limit_value", "col.al_limit_value", function (r) { return n.fmt(r.limit_value); }],
      ["level", "col.al_level", function (r) { return r.level_name ? r.level_name + " (" + r.level_source + ")" : ""; }],
      ["deliveries", "col.al_deliveries", deliveries],
      ["ack", "col.al_ack", ackCell]
    ];

    function show(d) {
      if (d.total) {
        n.setLabel(summary, "al.summary", {first: d.offset + 1, last: d.offset + d.count, total: d.total});
      } else {
        summary.textContent = "";
      }
      n.table("alerts-table", d.rows, COLUMNS, "al.none");
      document.getElementById("alerts-prev").disabled = d.offset <= 0;
      document.getElementById("alerts-next").disabled = d.offset + d.count >= d.total;
    }

    function load() {
      errorBox.hidden = true;
      var p = params();
      p.set("limit", String(PAGE));
      p.set("offset", String(offset));
      var exportParams = params();
      exportParams.set("format", "csv");
      csv.setAttribute("href", n.root + "api/alerts/firings?" + exportParams.toString());
      n.api("alerts/firings", p).then(show, fail);
    }

    function limits(r) {
      var span = document.createElement("span");
      ["threshold", "factor", "band_low", "band_high", "max_studies", "window_days"].forEach(function (k) {
        if (r[k] === null || r[k] === undefined) return;
        if (span.childNodes.length) span.appendChild(document.createTextNode(", "));
        span.appendChild(n.label("al.r." + k));
        span.appendChild(document.createTextNode(" " + n.fmt(r[k])));
      });
      return span;
    }

    function channels(r) {
      var span = document.createElement("span");
      span.textContent = (r.email_to || []).concat(r.webhook_url ? [r.webhook_url] : []).join(", ") + " ";
      if (r.digest) span.appendChild(n.label("al.digest"));
      return span;
    }

    function deleteButton(r) {
      var b = document.createElement("button");
      b.type = "button";
      b.appendChild(n.label("al.r.delete"));
      b.addEventListener("click", function () {
        send("DELETE", "alerts/rules/" + r.id).then(function () {
          n.setLabel(ruleMessage, "al.r.deleted", {id: r.id});
          loadRules();
          load();
        }, fail);
      });
      return b;
    }

    var RULE_COLUMNS = [
      ["id", "col.al_r_id"], ["name", "col.al_r_name"],
      ["kind", "col.al_r_kind", function (r) { return n.label("al.kind." + r.kind); }],
      ["limits", "col.al_r_limits", limits],
      ["scope", "col.al_r_scope", function (r) {
        return [r.standard_name, r.agent, r.scanner_id].filter(function (x) { return x !== null && x !== undefined; }).join(", ");
      }],
      ["channels", "col.al_r_channels", channels],
      ["enabled", "col.al_r_enabled", function (r) { return n.label(r.enabled ? "al.yes" : "al.no"); }],
      ["firings", "col.al_r_firings", function (r) { return r.firings + " (" + r.open_firings + ")"; }],
      ["delete", "col.al_r_delete", deleteButton]
    ];

    function loadRules() {
      n.api("alerts/rules").then(function (d) {
        n.table("rules-table", d.rows, RULE_COLUMNS, "al.r.none");
        var chosen = ruleSelect.value;
        while (ruleSelect.options.length > 1) ruleSelect.remove(1);
        d.rows.forEach(function (r) {
          var o = document.createElement("option");
          o.value = String(r.id);
          o.textContent = r.name;
          ruleSelect.appendChild(o);
        });
        ruleSelect.value = chosen;
      }, fail);
    }

    ruleForm.addEventListener("submit", function (e) {
      e.preventDefault();
      errorBox.hidden = true;
      var body = {};
      new FormData(ruleForm).forEach(function (value, key) {
        var v = String(value).trim();
        if (v === "") return;
        if (key === "email_to") body[key] = v.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
        else if (key === "digest") body[key] = true;
        else if (["threshold", "factor", "band_low", "band_high"].indexOf(key) >= 0) body[key] = Number(v);
        else if (["max_studies", "window_days"].indexOf(key) >= 0) body[key] = parseInt(v, 10);
        else body[key] = v;
      });
      send("POST", "alerts/rules", body).then(function (r) {
        n.setLabel(ruleMessage, "al.r.saved", {id: r.id});
        loadRules();
      }, fail);
    });

    form.addEventListener("submit", function (e) { e.preventDefault(); offset = 0; load(); });
    document.getElementById("alerts-prev").addEventListener("click", function () {
      offset = Math.max(0, offset - PAGE);
      load();
    });
    document.getElementById("alerts-next").addEventListener("click", function () { offset += PAGE; load(); });
    loadRules();
    load();
  }

  n.register("alerts", I18N, run);
})();
