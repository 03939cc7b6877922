// nmdose research projects pages: /nmdose/ui/projects (the projects the user may see) and
// /nmdose/ui/project/<name> (its studies with viewer, ZIP and dose links; upload and adding studies for writers).
// On the shared shell: nmdose.js's helpers and language (window.nmdose.register); every value goes into the DOM
// as text, never as HTML.
(function () {
  "use strict";
  var I18N = {
    en: {
      "nav.projects": "Projects",
      "pj.title": "Research projects",
      "pj.hint": "A project is a named set of research PACS studies with its members. You see the projects you are a member of.",
      "pj.create": "New project", "pj.f.name": "Name", "pj.f.description": "Description", "pj.f.create": "Create",
      "pj.f.rule": "lower-case letters, digits, - and _, 2 to 63 characters",
      "pj.created": "Project {name} created.", "pj.exists": "Project {name} exists already.",
      "pj.project": "Research project",
      "pj.summary": "{n} studies; your access:",
      "pj.access.read": "read", "pj.access.write": "read and write",
      "pj.upload": "Upload DICOM files", "pj.f.files": "DICOM files or ZIP", "pj.f.upload": "Upload",
      "pj.add": "Add studies", "pj.f.ids": "StudyInstanceUIDs, accession numbers or a CSV",
      "pj.f.filter": "or census description", "pj.f.year": "Year", "pj.f.add": "Add",
      "pj.uploading": "Uploading {n} file(s)…",
      "pj.uploaded": "{files} files: {stored} stored, {already} already stored, {bad} bad; {studies} studies in the project.",
      "pj.added": "{added} added, {already} already in the project, {unknown} accession numbers unknown, {refused} lines refused.",
      "pj.nothing": "Nothing to add: give UIDs, accession numbers, a CSV or a description.",
      "pj.viewer": "Viewer", "pj.zip": "ZIP", "pj.dose": "Dose", "pj.remove": "Remove", "pj.yes": "yes", "pj.no": "no",
      "col.pj_name": "Project", "col.pj_description": "Description", "col.pj_studies": "Studies",
      "col.pj_access": "Access", "col.pj_created": "Created", "col.pj_date": "Date", "col.pj_modalities": "Modalities",
      "col.pj_series": "Series", "col.pj_instances": "Instances", "col.pj_dose": "Dose record",
      "col.pj_uid": "StudyInstanceUID", "col.pj_open": "Open", "col.pj_file": "File", "col.pj_reason": "Reason",
      "pj.copies": "Pseudonymised copies",
      "pj.copies.hint": "De-identified copies of the project's studies in the pseudoPACS: PS 3.15 basic profile, a keyed pseudonym per patient, new UIDs; the dose attributes kept.",
      "pj.f.dates": "Dates", "pj.f.dates.shift": "shifted per patient", "pj.f.dates.keep": "kept",
      "pj.f.keep_dose": "keep the dose attributes", "pj.f.pseudonymise": "Make a pseudonymised copy",
      "pj.job": "Copy job: {state}", "pj.job.pending": "queued", "pj.job.running": "running", "pj.job.done": "done",
      "pj.job.failed": "failed", "pj.no_copies": "no copy yet",
      "col.pj_copy_uid": "Copy StudyInstanceUID", "col.pj_pseudonym": "Pseudonym", "col.pj_state": "State",
      "col.pj_target": "Where", "col.pj_finished": "Finished"
    },
    ko: {
      "nav.projects": "연구 프로젝트",
      "pj.title": "연구 프로젝트",
      "pj.hint": "프로젝트는 연구 PACS 검사에 이름을 붙인 묶음과 그 구성원입니다. 내가 구성원인 프로젝트만 보입니다.",
      "pj.create": "새 프로젝트", "pj.f.name": "이름", "pj.f.description": "설명", "pj.f.create": "만들기",
      "pj.f.rule": "영문 소문자, 숫자, - 와 _, 2~63자",
      "pj.created": "프로젝트 {name}을(를) 만들었습니다.", "pj.exists": "프로젝트 {name}이(가) 이미 있습니다.",
      "pj.project": "연구 프로젝트",
      "pj.summary": "검사 {n}건; 내 권한:",
      "pj.access.read": "읽기", "pj.access.write": "읽기와 쓰기",
      "pj.upload": "DICOM 파일 올리기", "pj.f.files": "DICOM 파일 또는 ZIP", "pj.f.upload": "올리기",
      "pj.add": "검사 추가", "pj.f.ids": "StudyInstanceUID, 접수번호 또는 CSV",
      "pj.f.filter": "또는 센서스 검사명", "pj.f.year": "연도", "pj.f.add": "추가",
      "pj.uploading": "파일 {n}개 올리는 중…",
      "pj.uploaded": "파일 {files}개: 저장 {stored}, 이미 저장됨 {already}, 불량 {bad}; 프로젝트의 검사 {studies}건.",
      "pj.added": "추가 {added}건, 이미 있음 {already}건, 모르는 접수번호 {unknown}건, 거부된 줄 {refused}개.",
      "pj.nothing": "추가할 것이 없습니다: UID, 접수번호, CSV 또는 검사명을 입력하세요.",
      "pj.viewer": "뷰어", "pj.zip": "ZIP", "pj.dose": "선량", "pj.remove": "제외", "pj.yes": "예", "pj.no": "아니오",
      "col.pj_name": "프로젝트", "col.pj_description": "설명", "col.pj_studies": "검사 수",
      "col.pj_access": "권한", "col.pj_created": "만든 날", "col.pj_date": "날짜", "col.pj_modalities": "영상 장비",
      "col.pj_series": "시리즈", "col.pj_instances": "영상 수", "col.pj_dose": "선량 기록",
      "col.pj_uid": "검사 UID", "col.pj_open": "열기", "col.pj_file": "파일", "col.pj_reason": "이유",
      "pj.copies": "가명처리 사본",
      "pj.copies.hint": "가명 PACS에 만든 프로젝트 검사의 비식별 사본: PS 3.15 기본 프로파일, 환자별 키 가명, 새 UID; 선량 정보는 유지.",
      "pj.f.dates": "날짜", "pj.f.dates.shift": "환자별로 이동", "pj.f.dates.keep": "그대로",
      "pj.f.keep_dose": "선량 정보 유지", "pj.f.pseudonymise": "가명처리 사본 만들기",
      "pj.job": "사본 작업: {state}", "pj.job.pending": "대기", "pj.job.running": "진행 중", "pj.job.done": "완료",
      "pj.job.failed": "실패", "pj.no_copies": "아직 사본이 없습니다",
      "col.pj_copy_uid": "사본 검사 UID", "col.pj_pseudonym": "가명", "col.pj_state": "상태",
      "col.pj_target": "위치", "col.pj_finished": "끝난 시각"
    }
  };
  var n = window.nmdose;

  function showError(id, err) {
    var el = document.getElementById(id);
    el.replaceChildren(n.errorText(err));
    el.hidden = false;
  }

  // A state-changing call: JSON (or the file's own type) with the token (nmdose-auth.js), the answer's JSON.
  function send(method, path, body, type) {
    var opts = {method: method, credentials: "same-origin", headers: {"Content-Type": type || "application/json"}};
    if (body !== undefined) opts.body = type ? body : JSON.stringify(body);
    return window.nmdoseFetch(n.root + "api/" + path, opts).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok && !(data && data.bad)) throw new Error(data.error || r.statusText);
        return data;
      });
    });
  }

  function linkTo(href, key, download) {
    var a = document.createElement("a");
    a.href = href;
    a.setAttribute("data-i18n", key);
    a.textContent = n.t(key);
    if (download) a.setAttribute("data-download", "");
    return a;
  }

  function yesNo(v) { return n.label(v ? "pj.yes" : "pj.no"); }

  function projectsPage() {
    n.api("projects").then(function (d) {
      n.table("projects-table", d.rows, [
        ["name", "col.pj_name", function (r) { return n.link(n.root + "ui/project/" + encodeURIComponent(r.name), r.name); }],
        ["description", "col.pj_description"], ["studies", "col.pj_studies"],
        ["access", "col.pj_access", function (r) { return n.label("pj.access." + r.access); }],
        ["created_at", "col.pj_created", function (r) { return String(r.created_at || "").slice(0, 10); }]]);
      document.getElementById("project-create").hidden = !d.admin;
    }).catch(function (e) { showError("projects-error", e); });
    var form = document.getElementById("project-create");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = new FormData(form);
      var name = String(f.get("name")).trim();
      send("POST", "projects", {name: name, description: String(f.get("description") || "")}).then(function (d) {
        n.setLabel(document.getElementById("project-create-result"), d.created ? "pj.created" : "pj.exists", {name: name});
        projectsPage();
      }).catch(function (e) { showError("projects-error", e); });
    });
  }

  function projectPage() {
    var name = JSON.parse(document.body.getAttribute("data-page-data") || "{}").name;
    var base = "projects/" + encodeURIComponent(name);

    function load() {
      return n.api(base).then(function (d) {
        document.getElementById("project-description").textContent = d.project.description || "";
        document.getElementById("project-summary").replaceChildren(n.label("pj.summary", {n: d.count}),
          document.createTextNode(" "), n.label(d.write ? "pj.access.write" : "pj.access.read"));
        var columns = [
          ["study_date", "col.pj_date"], ["description", "col.pj_description"], ["modalities", "col.pj_modalities"],
          ["series_count", "col.pj_series"], ["instance_count", "col.pj_instances"],
          ["dose_record", "col.pj_dose", function (r) { return yesNo(r.dose_record); }],
          ["study_instance_uid", "col.pj_uid"],
          ["open", "col.pj_open", function (r) {
            var uid = encodeURIComponent(r.study_instance_uid);
            var span = document.createElement("span");
            span.className = "project-links";
            span.appendChild(linkTo(n.root + "viewer/viewer?StudyInstanceUIDs=" + uid, "pj.viewer"));
            span.appendChild(document.createTextNode(" · "));
            span.appendChild(linkTo(n.root + "api/" + base + "/studies/" + uid + "/archive", "pj.zip", true));
            if (r.dose_record) {
              span.appendChild(document.createTextNode(" · "));
              span.appendChild(linkTo(n.root + "ui/study/" + uid, "pj.dose"));
            }
            if (d.write) {
              span.appendChild(document.createTextNode(" · "));
              var b = document.createElement("button");
              b.type = "button";
              b.setAttribute("data-i18n", "pj.remove");
              b.textContent = n.t("pj.remove");
              b.addEventListener("click", function () {
                send("DELETE", base + "/studies/" + uid).then(load).catch(function (e) { showError("project-error", e); });
              });
              span.appendChild(b);
            }
            return span;
          }]];
        n.table("project-studies", d.rows, columns);
        document.getElementById("project-write").hidden = !d.write;
        document.getElementById("project-pseudonymise").hidden = !d.write;
      }).catch(function (e) { showError("project-error", e); });
    }

    var upload = document.getElementById("project-upload");
    upload.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var files = Array.prototype.slice.call(upload.elements.files.files);
      var total = {files: 0, stored: 0, already: 0, bad: 0, studies: {}};
      var bad = [];
      var result = document.getElementById("upload-result");
      n.setLabel(result, "pj.uploading", {n: files.length});
      files.reduce(function (chain, file) {
        return chain.then(function () {
          var zip = /\.zip$/i.test(file.name);
          var path = base + "/upload" + (zip ? "" : "?filename=" + encodeURIComponent(file.name));
          return send("POST", path, file, zip ? "application/zip" : "application/dicom").then(function (d) {
            total.files += d.files; total.stored += d.stored; total.already += d.already_stored; total.bad += d.bad_files;
            (d.study_instance_uids || []).forEach(function (u) { total.studies[u] = true; });
            (d.bad || []).forEach(function (b) { bad.push({file: (zip ? file.name + ": " : "") + b.file, reason: b.reason}); });
          });
        });
      }, Promise.resolve()).then(function () {
        n.setLabel(result, "pj.uploaded", {files: total.files, stored: total.stored, already: total.already,
          bad: total.bad, studies: Object.keys(total.studies).length});
        var table = document.getElementById("upload-bad");
        table.hidden = !bad.length;
        n.table("upload-bad", bad, [["file", "col.pj_file"], ["reason", "col.pj_reason"]]);
        return load();
      }).catch(function (e) { showError("project-error", e); });
    });

    // pseudonymised copies: the table for readers, the button for writers; the job polled until it ends
    var polling = null;
    function loadCopies() {
      return n.api(base + "/copies").then(function (d) {
        var job = document.getElementById("copies-job");
        if (d.job) {
          n.setLabel(job, "pj.job", {state: n.t("pj.job." + d.job.state)});
          if (d.job.last_error && d.job.state === "failed") job.appendChild(document.createTextNode(" " + d.job.last_error));
        } else job.replaceChildren();
        n.table("project-copy-table", d.rows, [
          ["study_instance_uid", "col.pj_uid"], ["pseudonym", "col.pj_pseudonym"],
          ["copy_study_uid", "col.pj_copy_uid"], ["state", "col.pj_state"], ["instances", "col.pj_instances"],
          ["target", "col.pj_target"],
          ["finished_at", "col.pj_finished", function (r) { return String(r.finished_at || "").slice(0, 19).replace("T", " "); }]
        ], "pj.no_copies");
        var active = d.job && (d.job.state === "pending" || d.job.state === "running");
        if (active && !polling) polling = setInterval(loadCopies, 3000);
        if (!active && polling) { clearInterval(polling); polling = null; }
      }).catch(function (e) { showError("project-error", e); });
    }
    var pseudo = document.getElementById("project-pseudonymise");
    pseudo.addEventListener("submit", function (ev) {
      ev.preventDefault();
      send("POST", base + "/pseudonymise", {dates: pseudo.elements.dates.value,
        keep_dose: pseudo.elements.keep_dose.checked}).then(loadCopies)
        .catch(function (e) { showError("project-error", e); });
    });
    loadCopies();

    var add = document.getElementById("project-add");
    add.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var ids = String(add.elements.ids.value || "").trim();
      var desc = String(add.elements.description.value || "").trim();
      var year = String(add.elements.year.value || "").trim();
      var body;
      if (ids) body = {csv: ids};
      else if (desc) { body = {description: desc}; if (year) body.year = Number(year); }
      var result = document.getElementById("add-result");
      if (!body) { n.setLabel(result, "pj.nothing"); return; }
      send("POST", base + "/studies", body).then(function (d) {
        n.setLabel(result, "pj.added", {added: d.added, already: d.already,
          unknown: (d.unknown_accessions || []).length, refused: (d.refused || []).length});
        return load();
      }).catch(function (e) { showError("project-error", e); });
    });
    load();
  }

  n.register("projects", I18N, projectsPage);
  n.register("project", I18N, projectPage);
})();
