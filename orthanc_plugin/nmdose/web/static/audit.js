// nmdose audit page (/nmdose/ui/audit): fills the table from /nmdose/api/audit with the form's filters, newest
// first, one page at a time. Every value goes into the DOM as text (textContent), never as HTML.
(function () {
  "use strict";
  var COLUMNS = [
    ["at", "Time (UTC)"], ["source", "Source"], ["actor_username", "User"], ["actor_subject", "Subject"],
    ["client_address", "Client"], ["method", "Method"], ["action", "Route / action"], ["params", "Parameters"],
    ["study_uids", "Studies"], ["rows_returned", "Rows"], ["format", "Format"], ["status", "Status"],
    ["outcome", "Outcome"]
  ];
  var form = document.getElementById("audit-filters");
  var table = document.getElementById("audit-table");
  var errorBox = document.getElementById("audit-error");
  var prev = document.getElementById("audit-prev");
  var next = document.getElementById("audit-next");
  var pageLabel = document.getElementById("audit-page");
  var csv = document.getElementById("audit-csv");
  var page = 1;

  function filters() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (String(value).trim() !== "") params.set(key, String(value).trim());
    });
    return params;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) return value.join(" ");
    if (typeof value === "object") {
      return Object.keys(value).map(function (k) { return k + "=" + value[k]; }).join(", ");
    }
    return String(value);
  }

  function render(data) {
    while (table.firstChild) table.removeChild(table.firstChild);
    var head = table.createTHead().insertRow();
    COLUMNS.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c[1];
      head.appendChild(th);
    });
    var body = table.createTBody();
    if (!data.rows.length) {
      var cell = body.insertRow().insertCell();
      cell.colSpan = COLUMNS.length;
      cell.textContent = "no audit rows match";
    }
    data.rows.forEach(function (row) {
      var tr = body.insertRow();
      if (row.outcome !== "success") tr.className = "error";
      COLUMNS.forEach(function (c) {
        var value = row[c[0]];
        if (c[0] === "study_uids" && row.study_uids_total > (row.study_uids || []).length) {
          value = text(value) + " … (" + row.study_uids_total + " in all)";
        }
        tr.insertCell().textContent = text(value);
      });
    });
    pageLabel.textContent = "page " + data.page;
    prev.disabled = data.page <= 1;
    next.disabled = !data.more;
  }

  async function load() {
    var params = filters();
    params.set("page", String(page));
    var exportParams = filters();
    exportParams.set("format", "csv");
    exportParams.set("page", String(page));
    csv.href = "../api/audit?" + exportParams.toString();
    errorBox.hidden = true;
    try {
      var resp = await window.nmdoseFetch("../api/audit?" + params.toString());
      var data = await resp.json();
      if (!resp.ok) throw new Error(data.error || ("HTTP " + resp.status));
      render(data);
    } catch (e) {
      errorBox.textContent = String(e.message || e);
      errorBox.hidden = false;
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    page = 1;
    load();
  });
  prev.addEventListener("click", function () { if (page > 1) { page -= 1; load(); } });
  next.addEventListener("click", function () { page += 1; load(); });
  load();
})();
