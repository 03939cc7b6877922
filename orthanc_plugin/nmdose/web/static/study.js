// nmdose study dose page (/nmdose/ui/study/{uid}): one study's dose record: its fields and both DLP totals, the
// CT irradiation events, the radiopharmaceutical administrations, the effective doses with their coefficients and
// sources, and the source objects. On the shared shell: nmdose.js's helpers and language
// (window.nmdose.register); every value goes into the DOM as text, never as HTML.
(function () {
  "use strict";
  var n = window.nmdose;
  var t = n.t, api = n.api, fmt = n.fmt, table = n.table, label = n.label, setLabel = n.setLabel,
    showError = n.showError, warning = n.warning, withTitle = n.withTitle, orthancRoot = n.orthancRoot;
  var body = document.body;

  var I18N = {
    en: {
      "study.title": "Study dose", "study.open": "Open in Orthanc Explorer", "study.ct": "CT irradiation events",
      "study.nm": "Radiopharmaceutical administrations", "study.objects": "Source objects",
      "field.study_date": "Study date", "field.accession_number": "Accession number",
      "field.study_description": "Study description", "field.manufacturer": "Manufacturer",
      "field.model_name": "Scanner model", "field.station_name": "Station",
      "field.patient_age_years": "Patient age (years)", "field.patient_sex": "Patient sex",
      "field.patient_weight_kg": "Patient weight (kg)", "field.ct_event_count": "CT irradiation events",
      "field.ct_total_dlp_mgycm": "Total DLP: sum of the irradiation events (mGy·cm)",
      "field.ct_reported_total_dlp_mgycm": "Total DLP reported by the scanner (mGy·cm)",
      "field.ct_effective_dose_msv": "CT effective dose (mSv)",
      "field.nm_total_activity_mbq": "Administered activity, total (MBq)",
      "field.nm_effective_dose_msv": "Radiopharmaceutical effective dose (mSv)",
      "field.total_effective_dose_msv": "Total effective dose, CT + NM (mSv)", "field.warnings": "Warnings",
      "col.field": "Field", "study.accession": "Accession number", "study.uid": "StudyInstanceUID",
      "note.nm_part_missing": "no total: NM part missing (no radiopharmaceutical administration was found for " +
        "this PET/NM study)",
      "study.dlp_more": "The sum of the irradiation events ({sum} mGy·cm) is larger than the scanner's reported " +
        "total ({reported} mGy·cm): the examination's events came in more than one dose report (e.g. a report " +
        "split in two objects), and each report totals only its own events. The statistics use the sum.",
      "study.dlp_less": "The scanner's reported total ({reported} mGy·cm) is larger than the sum of the " +
        "irradiation events received ({sum} mGy·cm): some events are not in the reports received. The " +
        "statistics use the sum.",
      "col.ordinal": "#", "col.region": "Target region", "col.acq_type": "Acquisition type",
      "col.ctdivol": "CTDIvol (mGy)", "col.dlp": "DLP (mGy·cm)", "col.phantom": "Phantom", "col.kvp": "kVp",
      "col.radionuclide": "Radionuclide", "col.activity": "Activity (MBq)", "col.start": "Injection time",
      "col.per_kg": "MBq/kg", "col.sop": "SOP Instance UID", "col.kind": "Object kind", "col.warnings": "Warnings",
      "col.admin_source": "Read from", "objkind.ct_rdsr": "CT radiation dose SR",
      "objkind.ct_esr": "CT dose report (Enhanced SR)",
      "objkind.radiopharmaceutical_rdsr": "Radiopharmaceutical radiation dose SR",
      "objkind.pet_image": "PET image header", "objkind.nm_image": "NM image header",
      "objkind.ct_dose_screen": "CT dose screen", "objkind.other": "other", "objstatus.ok": "read",
      "objstatus.not_dose": "no dose data", "phantom.head16": "head (16 cm)", "phantom.body32": "body (32 cm)",
      "acq.Spiral Acquisition": "spiral", "acq.Sequenced Acquisition": "sequenced (axial)",
      "acq.Constant Angle Acquisition": "localizer (constant angle)",
      "acq.Stationary Acquisition": "stationary (no table movement)", "acq.Free Acquisition": "free",
      "acq.Cone Beam Acquisition": "cone beam",
      "study.effective": "Effective dose: values, coefficients and their sources", "col.part": "Part",
      "col.e": "E (mSv)", "col.coefficient": "Coefficient", "col.coef_source": "Coefficient source / note",
      "part.ct_total": "CT total", "part.nm_total": "NM total", "part.total": "Total (CT + NM)",
      "part.event": "CT event", "part.admin": "Administration", "part.notes": "Notes", "unit.k": "mSv/(mGy·cm)",
      "unit.e": "mSv/MBq", "col.ssde": "SSDE (mGy)", "col.ssde_size": "Patient size for SSDE (mm)",
      "col.net_activity": "Net activity (MBq)", "col.activity_rule": "Activity used",
      "col.start_source": "Injection time from", "col.pre_measured": "Pre-injection measured",
      "col.post_measured": "Residual measured", "col.plausibility": "Plausibility",
      "size.water_equivalent_diameter": "water-equivalent diameter", "size.effective_diameter": "effective diameter",
      "size.lateral_dimension": "lateral dimension", "size.ap_dimension": "AP dimension",
      "size.lateral_plus_ap": "lateral + AP dimension", "ssde.method": "method",
      "rule.rrdsr_administered": "administered activity of the dose report (RRDSR)",
      "rule.rrdsr_net_pre_post": "net of the pre- and post-injection measurements (RRDSR)",
      "rule.pet_header_start_datetime": "PET image header, at its injection date and time",
      "rule.pet_header_start_time": "PET image header, injection time placed on a date",
      "rule.pet_header_no_start_time": "PET image header, no injection time",
      "rule.nm_header_start_datetime": "NM image header, at its injection date and time",
      "rule.nm_header_start_time": "NM image header, injection time placed on a date",
      "rule.nm_header_no_start_time": "NM image header, no injection time", "startsrc.rrdsr": "dose report (RRDSR)",
      "startsrc.header_start_datetime": "header date and time",
      "startsrc.header_start_time_AcquisitionDate": "header time + acquisition date",
      "startsrc.header_start_time_StudyDate": "header time + study date",
      "startsrc.minus_1day": "previous day (injected before midnight)", "warn.plausibility": "Implausible activity"
    },
    ko: {
      "study.title": "검사 선량", "study.open": "Orthanc 탐색기에서 열기", "study.ct": "CT 조사 이벤트", "study.nm": "방사성의약품 투여",
      "study.objects": "원본 객체", "field.study_date": "검사일", "field.accession_number": "검사 번호",
      "field.study_description": "검사명", "field.manufacturer": "제조사", "field.model_name": "장비 모델",
      "field.station_name": "장비명", "field.patient_age_years": "환자 나이 (세)", "field.patient_sex": "환자 성별",
      "field.patient_weight_kg": "환자 체중 (kg)", "field.ct_event_count": "CT 조사 이벤트 수",
      "field.ct_total_dlp_mgycm": "총 DLP: 조사 이벤트의 합 (mGy·cm)",
      "field.ct_reported_total_dlp_mgycm": "장비가 보고한 총 DLP (mGy·cm)", "field.ct_effective_dose_msv": "CT 유효선량 (mSv)",
      "field.nm_total_activity_mbq": "총 투여 방사능 (MBq)", "field.nm_effective_dose_msv": "방사성의약품 유효선량 (mSv)",
      "field.total_effective_dose_msv": "총 유효선량, CT + 핵의학 (mSv)", "field.warnings": "경고", "col.field": "항목",
      "study.accession": "검사 번호", "study.uid": "검사 UID (StudyInstanceUID)",
      "note.nm_part_missing": "합계 없음: 핵의학 부분 없음 (이 PET/핵의학 검사의 방사성의약품 투여 기록을 " +
        "찾지 못함)",
      "study.dlp_more": "조사 이벤트의 합({sum} mGy·cm)이 장비가 보고한 총 DLP({reported} mGy·cm)보다 " +
        "큽니다: 검사의 이벤트가 둘 이상의 선량 보고서(예: 두 객체로 나뉜 보고서)로 왔고, 각 보고서는 자기 " +
        "이벤트만 합산합니다. 통계에는 합을 사용합니다.",
      "study.dlp_less": "장비가 보고한 총 DLP({reported} mGy·cm)가 받은 조사 이벤트의 합({sum} mGy·cm)보다 " +
        "큽니다: 일부 이벤트가 받은 보고서에 없습니다. 통계에는 합을 사용합니다.",
      "col.ordinal": "#", "col.region": "촬영 부위", "col.acq_type": "촬영 방식", "col.ctdivol": "CTDIvol (mGy)",
      "col.dlp": "DLP (mGy·cm)", "col.phantom": "팬텀", "col.kvp": "kVp", "col.radionuclide": "방사성핵종",
      "col.activity": "투여 방사능 (MBq)", "col.start": "투여 시각", "col.per_kg": "MBq/kg",
      "col.sop": "객체 UID (SOP Instance UID)", "col.kind": "객체 종류", "col.warnings": "경고", "col.admin_source": "읽은 곳",
      "objkind.ct_rdsr": "CT 선량 보고서 (RDSR)", "objkind.ct_esr": "CT 선량 보고서 (Enhanced SR)",
      "objkind.radiopharmaceutical_rdsr": "방사성의약품 선량 보고서 (RRDSR)", "objkind.pet_image": "PET 영상 헤더",
      "objkind.nm_image": "핵의학 영상 헤더", "objkind.ct_dose_screen": "CT 선량 화면", "objkind.other": "기타",
      "objstatus.ok": "읽음", "objstatus.not_dose": "선량 정보 없음", "phantom.head16": "머리 (16 cm)",
      "phantom.body32": "몸통 (32 cm)", "acq.Spiral Acquisition": "나선형", "acq.Sequenced Acquisition": "축방향 연속",
      "acq.Constant Angle Acquisition": "위치결정 촬영 (고정 각도)", "acq.Stationary Acquisition": "고정 (테이블 정지)",
      "acq.Free Acquisition": "자유", "acq.Cone Beam Acquisition": "콘빔", "study.effective": "유효선량: 값, 환산계수와 출처",
      "col.part": "구분", "col.e": "유효선량 (mSv)", "col.coefficient": "환산계수", "col.coef_source": "환산계수 출처 / 비고",
      "part.ct_total": "CT 합계", "part.nm_total": "핵의학 합계", "part.total": "합계 (CT + 핵의학)", "part.event": "CT 이벤트",
      "part.admin": "투여", "part.notes": "비고", "unit.k": "mSv/(mGy·cm)", "unit.e": "mSv/MBq",
      "col.ssde": "크기 보정 선량 SSDE (mGy)", "col.ssde_size": "SSDE 환자 크기 (mm)", "col.net_activity": "순 투여 방사능 (MBq)",
      "col.activity_rule": "사용한 방사능", "col.start_source": "투여 시각 출처", "col.pre_measured": "투여 전 측정 시각",
      "col.post_measured": "잔류 측정 시각", "col.plausibility": "타당성", "size.water_equivalent_diameter": "물 등가 직경",
      "size.effective_diameter": "유효 직경", "size.lateral_dimension": "좌우 폭", "size.ap_dimension": "전후 두께",
      "size.lateral_plus_ap": "좌우 폭 + 전후 두께", "ssde.method": "방법", "rule.rrdsr_administered": "선량 보고서(RRDSR)의 투여 방사능",
      "rule.rrdsr_net_pre_post": "투여 전·후 측정값의 차 (RRDSR)", "rule.pet_header_start_datetime": "PET 영상 헤더, 투여 일시 기준",
      "rule.pet_header_start_time": "PET 영상 헤더, 투여 시각을 날짜에 배치",
      "rule.pet_header_no_start_time": "PET 영상 헤더, 투여 시각 없음", "rule.nm_header_start_datetime": "핵의학 영상 헤더, 투여 일시 기준",
      "rule.nm_header_start_time": "핵의학 영상 헤더, 투여 시각을 날짜에 배치", "rule.nm_header_no_start_time": "핵의학 영상 헤더, 투여 시각 없음",
      "startsrc.rrdsr": "선량 보고서 (RRDSR)", "startsrc.header_start_datetime": "헤더의 일시",
      "startsrc.header_start_time_AcquisitionDate": "헤더 시각 + 획득 날짜",
      "startsrc.header_start_time_StudyDate": "헤더 시각 + 검사 날짜", "startsrc.minus_1day": "전날 (자정 전 투여)",
      "warn.plausibility": "비정상 투여 방사능"
    }
  };

  // A label of a coded value (`prefix` + value) when this page's dictionaries have one, else the value as it is.
  function codeLabel(prefix, v) {
    if (v === null || v === undefined || v === "") return "";
    return I18N.en[prefix + v] ? label(prefix + v) : fmt(v);
  }

  // Where the injection date-time came from (dose/pet_image_header.py): "header_start_time+StudyDate-1day".
  function startSource(v) {
    if (!v) return "";
    var moved = /-1day$/.test(v);
    var key = "startsrc." + v.replace(/-1day$/, "").replace("+", "_");
    var span = document.createElement("span");
    span.appendChild(I18N.en[key] ? label(key) : document.createTextNode(v.replace(/-1day$/, "")));
    if (moved) {
      span.appendChild(document.createTextNode(", "));
      span.appendChild(label("startsrc.minus_1day"));
    }
    return span;
  }

  function study() {
    var uid = JSON.parse(body.getAttribute("data-page-data")).uid;
    api("dose/study/" + encodeURIComponent(uid)).then(function (s) {
      // Heading: description, accession number, date (PACS text as text only).
      var heading = document.getElementById("study-heading");
      heading.replaceChildren();
      [s.study_description, s.accession_number, s.study_date].forEach(function (v, i) {
        if (v === null || v === undefined || v === "") return;
        if (heading.childNodes.length) heading.appendChild(document.createTextNode(" · "));
        if (i === 1) { heading.appendChild(label("study.accession")); heading.appendChild(document.createTextNode(" ")); }
        heading.appendChild(document.createTextNode(String(v)));
      });
      // Both DLP totals, and why they differ when they do (more than 0.5 %).
      var sum = s.ct_total_dlp_mgycm, reported = s.ct_reported_total_dlp_mgycm;
      var note = document.getElementById("study-dlp-note");
      if (sum !== null && reported !== null && Math.abs(sum - reported) > 0.005 * Math.max(sum, reported)) {
        setLabel(note, sum > reported ? "study.dlp_more" : "study.dlp_less", {sum: fmt(sum), reported: fmt(reported)});
        note.hidden = false;
      }
      var keys = ["study_date", "accession_number", "study_description", "manufacturer", "model_name",
        "station_name", "patient_age_years", "patient_sex", "patient_weight_kg", "ct_event_count",
        "ct_total_dlp_mgycm", "ct_reported_total_dlp_mgycm", "ct_effective_dose_msv", "nm_total_activity_mbq",
        "nm_effective_dose_msv", "total_effective_dose_msv", "warnings"];
      table("study-table", keys.map(function (k) { return {k: k, v: s[k]}; }), [
        ["k", "col.field", function (r) { return label("field." + r.k); }],
        ["v", "col.value", function (r) {
          if (r.k === "total_effective_dose_msv" && s.nm_part_missing) return label("note.nm_part_missing");
          if (r.k === "patient_sex" && r.v) return label("sex." + r.v);
          if (r.k === "warnings" && Array.isArray(r.v)) {  // a plausibility warning is shown as a warning
            var list = document.createElement("span");
            r.v.forEach(function (w, i) {
              if (i) list.appendChild(document.createTextNode("; "));
              list.appendChild(/^plausibility: /.test(String(w)) ? warning(String(w)) : document.createTextNode(fmt(w)));
            });
            return list;
          }
          if (Array.isArray(r.v)) return r.v.map(fmt).join("; ");
          return fmt(r.v);
        }]]);
      table("events-table", s.ct_events, [["ordinal", "col.ordinal"], ["acquisition_protocol", "col.protocol"],
        ["target_region", "col.region"], ["acquisition_type", "col.acq_type", function (r) {
          return r.acquisition_type && I18N.en["acq." + r.acquisition_type] ? label("acq." + r.acquisition_type)
            : fmt(r.acquisition_type);
        }], ["ctdivol_mgy", "col.ctdivol"], ["ssde_mgy", "col.ssde", function (r) {
          return withTitle(fmt(r.ssde_mgy), r.ssde_method ? t("ssde.method") + ": " + r.ssde_method : "");
        }], ["ssde_size_mm", "col.ssde_size", function (r) {
          if (r.ssde_size_mm === null || r.ssde_size_mm === undefined) return "";
          var span = withTitle(fmt(r.ssde_size_mm), r.ssde_method ? t("ssde.method") + ": " + r.ssde_method : "");
          if (r.ssde_size_kind) {
            span.appendChild(document.createTextNode(" ("));
            span.appendChild(codeLabel("size.", r.ssde_size_kind));
            span.appendChild(document.createTextNode(")"));
          }
          return span;
        }], ["dlp_mgycm", "col.dlp"], ["phantom", "col.phantom", function (r) {
          return r.phantom && I18N.en["phantom." + r.phantom] ? label("phantom." + r.phantom) : fmt(r.phantom);
        }], ["kvp", "col.kvp"], ["effective_dose_msv", "col.e"]]);
      var fromKind = {rrdsr: "radiopharmaceutical_rdsr", pet_image: "pet_image", nm_image: "nm_image"};
      // agents and nuclides as people write them (web/names.py), DICOM's text one hover away
      table("admin-table", s.radiopharmaceuticals, [["ordinal", "col.ordinal"], ["agent", "col.agent", function (r) {
          return withTitle(fmt(r.agent), r.agent_code_meaning || "");
        }], ["radionuclide", "col.radionuclide", function (r) {
          return withTitle(fmt(r.radionuclide), r.radionuclide_code_meaning || "");
        }], ["activity_mbq", "col.activity"],
        ["net_activity_mbq", "col.net_activity", function (r) {
          return withTitle(fmt(r.net_activity_mbq), r.net_activity_note || "");
        }], ["administered_activity_rule", "col.activity_rule", function (r) {
          return codeLabel("rule.", r.administered_activity_rule);
        }], ["start_datetime", "col.start"],
        ["start_datetime_source", "col.start_source", function (r) { return startSource(r.start_datetime_source); }],
        ["pre_measured_datetime", "col.pre_measured"], ["post_measured_datetime", "col.post_measured"],
        ["activity_per_kg_mbq", "col.per_kg"], ["effective_dose_msv", "col.e"], ["source", "col.admin_source",
          function (r) { return fromKind[r.source] ? label("objkind." + fromKind[r.source]) : fmt(r.source); }],
        ["plausibility", "col.plausibility", function (r) {
          if (!r.plausibility) return "";
          var span = document.createElement("span");
          span.appendChild(warning(label("warn.plausibility")));
          span.lastChild.setAttribute("data-warning", "plausibility");
          span.appendChild(document.createTextNode(": " + r.plausibility));
          return span;
        }]]);
      var sources = (s.derived || {}).sources || {};
      var ctSource = (s.derived || {}).age_band_years === null || (s.derived || {}).age_band_years === undefined
        ? sources.ct_k_adult : sources.ct_k_child;
      var eff = [
        {part: label("part.ct_total"), e: s.ct_effective_dose_msv, coef: "",
         src: s.ct_effective_dose_msv === null ? "" : ctSource || ""},
        {part: label("part.nm_total"), e: s.nm_effective_dose_msv, coef: "",
         src: s.nm_effective_dose_msv === null ? "" : sources.nm || ""},
        {part: label("part.total"), e: s.total_effective_dose_msv, coef: "",
         src: s.nm_part_missing ? label("note.nm_part_missing") : ""}];
      s.ct_events.forEach(function (ev) {
        var part = document.createElement("span");
        part.appendChild(label("part.event"));
        part.appendChild(document.createTextNode(" #" + ev.ordinal + " " + (ev.target_region || "")));
        eff.push({part: part, e: ev.effective_dose_msv, src: ev.k_source || "",
                  coef: ev.k_msv_per_mgycm === null ? "" : String(ev.k_msv_per_mgycm) + " " + t("unit.k")});
      });
      s.radiopharmaceuticals.forEach(function (a) {
        var part = document.createElement("span");
        part.appendChild(label("part.admin"));
        part.appendChild(document.createTextNode(" #" + a.ordinal + " " + (a.agent || "")));
        eff.push({part: part, e: a.effective_dose_msv, src: a.coefficient_note || "",
                  coef: a.coefficient_msv_per_mbq === null ? "" : String(a.coefficient_msv_per_mbq) + " " + t("unit.e")});
      });
      ((s.derived || {}).notes || []).forEach(function (n) {
        eff.push({part: label("part.notes"), e: null, coef: "", src: n});
      });
      table("study-effective-table", eff, [["part", "col.part", function (r) { return r.part; }],
        ["e", "col.e"], ["coef", "col.coefficient"], ["src", "col.coef_source", function (r) { return r.src; }]]);
      table("objects-table", s.objects, [["sop_instance_uid", "col.sop"], ["kind", "col.kind", function (r) {
        return I18N.en["objkind." + r.kind] ? label("objkind." + r.kind) : fmt(r.kind);
      }], ["modality", "col.modality"], ["status", "col.status", function (r) {
        return I18N.en["objstatus." + r.status] ? label("objstatus." + r.status) : fmt(r.status);
      }], ["warnings", "col.warnings", function (r) {
        return Array.isArray(r.warnings) ? r.warnings.map(fmt).join("; ") : fmt(r.warnings);
      }]]);
      if (s.orthanc_study_id) {
        var a = document.getElementById("orthanc-link");
        a.href = orthancRoot + "app/explorer.html#study?uuid=" + encodeURIComponent(s.orthanc_study_id);
        a.hidden = false;
      }
    }).catch(function (e) { showError("study-table", e); });
  }

  n.register("study", I18N, study);
})();
