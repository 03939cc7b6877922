// nmdose pages: fill tables and charts from /nmdose/api/. PACS-provided strings go into the DOM as text only
// (textContent), never as HTML.
(function () {
  "use strict";

  var I18N = {
    en: {
      "lang.toggle": "한국어", "nav.home": "Home", "nav.research": "Research PACS", "nav.dose": "Dose", "nav.patients": "Patients", "nav.names": "Standard names", "nav.scanners": "Scanners",
      "nav.report": "Report", "nav.alerts": "Alerts", "nav.projects": "Projects",
      "nav.orthanc": "Orthanc Explorer", "index.title": "nmdose",
      "research.title": "Research PACS: studies per year", "research.progress": "Progress",
      "research.census": "Census", "research.retrieve": "Retrieval",
      "research.yearly": "Studies per year and exam type",
      "research.new": "New descriptions waiting for acceptance", "research.corrections": "Modality corrections",
      "research.failed": "Failed retrievals",
      "grid.year": "{year}", "grid.total_row": "Total", "col.total": "Total", "col.no_date": "No date",
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
      "research.forward": "Forwarding to the dose PACS not complete",
      "prog.never": "not run yet", "prog.run.running": "running", "prog.run.done": "finished",
      "prog.run.failed": "failed", "prog.run.interrupted": "interrupted (the next run resumes)",
      "prog.days": "of the date range", "prog.studies": "studies", "prog.targets": "selected for retrieval",
      "prog.failed_queries": "failed queries", "prog.new_descriptions": "new descriptions",
      "prog.instances": "instances", "prog.state.done": "done", "prog.state.pending": "waiting",
      "prog.state.moving": "moving", "prog.state.verifying": "verifying", "prog.state.partial": "partial",
      "prog.state.failed": "failed",
      "research.estimate": "Backfill estimate", "est.pending": "studies pending",
      "est.time": "retrieval time", "est.ends": "ends", "est.beyond": "beyond 3 years", "est.failed": "failed",
      "est.none": "nothing pending",
      "research.imports": "Imported folders (drop folder)", "col.import_started": "Started",
      "col.import_folder": "Folder (hash)", "col.import_outcome": "Outcome", "col.import_files": "Files",
      "col.import_stored": "Stored", "col.import_skipped": "Skipped", "col.import_bad": "Bad files",
      "col.import_studies": "Studies", "col.import_mb": "MB", "col.import_seconds": "Seconds",
      "col.import_error": "Error",
      "dose.title": "Dose by protocol", "dose.ct_protocol": "CT: CTDIvol and DLP per acquisition protocol",
      "dose.ct_description": "CT: per study description (per study)", "dose.monthly": "Monthly median DLP per study",
      "dose.activity": "Administered activity per radiopharmaceutical",
      "f.from": "From", "f.to": "To", "f.protocol": "Protocol", "f.description": "Description",
      "f.station": "Station", "f.modality": "Modality", "f.agent": "Radiopharmaceutical", "f.sex": "Sex",
      "f.apply": "Apply", "f.csv": "CSV (events)",
      "study.title": "Study dose", "study.open": "Open in Orthanc Explorer", "study.ct": "CT irradiation events",
      "study.nm": "Radiopharmaceutical administrations", "study.objects": "Source objects",
      "state.retrieved": "retrieved", "state.pending": "pending", "state.failed": "failed",
      "state.not_target": "not a target", "empty": "no data", "error": "error",
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
      "field.study_date": "Study date", "field.accession_number": "Accession number",
      "field.study_description": "Study description", "field.manufacturer": "Manufacturer",
      "field.model_name": "Scanner model", "field.station_name": "Station", "field.patient_age_years": "Patient age (years)",
      "field.patient_sex": "Patient sex", "field.patient_weight_kg": "Patient weight (kg)",
      "field.ct_event_count": "CT irradiation events",
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
      "col.admin_source": "Read from",
      "objkind.ct_rdsr": "CT radiation dose SR", "objkind.ct_esr": "CT dose report (Enhanced SR)",
      "objkind.radiopharmaceutical_rdsr": "Radiopharmaceutical radiation dose SR",
      "objkind.pet_image": "PET image header", "objkind.nm_image": "NM image header",
      "objkind.ct_dose_screen": "CT dose screen", "objkind.other": "other",
      "objstatus.ok": "read", "objstatus.not_dose": "no dose data", "sex.M": "male", "sex.F": "female",
      "sex.O": "other", "phantom.head16": "head (16 cm)", "phantom.body32": "body (32 cm)",
      "acq.Spiral Acquisition": "spiral", "acq.Sequenced Acquisition": "sequenced (axial)",
      "acq.Constant Angle Acquisition": "localizer (constant angle)",
      "acq.Stationary Acquisition": "stationary (no table movement)", "acq.Free Acquisition": "free",
      "acq.Cone Beam Acquisition": "cone beam",
      "monthly.group": "Exam type (study description)", "monthly.top": "the {n} most frequent",
      "monthly.hint": "Median of the studies' total DLP (one value per study; localizers count in no n), per " +
        "month and study description; a month without studies is a gap.",
      "chart.month": "Month", "chart.monthly_y": "median DLP per study (mGy·cm)", "monthly.none": "(no description)",
      "col.nm_missing_n": "Left out of the total: NM part missing",
      "f.reason": "Reason", "f.all": "all", "f.levels": "Levels", "levels.official": "official only",
      "levels.all": "also proposed and example", "page.prev": "Previous", "page.next": "Next",
      "f.acknowledged": "Acknowledged", "ack.no": "not yet (to review)", "ack.yes": "acknowledged", "ack.all": "all",
      "ack.counts": "{yes} acknowledged, {no} to review", "ack.button": "Acknowledge", "ack.again": "Edit",
      "ack.comment": "Comment (required)", "ack.save": "Save", "ack.cancel": "Cancel", "ack.by": "{by}, {at}",
      "ack.empty": "A comment is required.", "col.ack": "Acknowledged", "col.alert_ack": "Alert",
      "ack.denied": "Not allowed: acknowledging needs the alerts:ack permission",
      "page.of": "{from}–{to} of {total}", "col.threshold": "Flagged above",
      "dose.levels": "Reference levels", "dose.dead_letter": "Dose files that failed",
      "study.effective": "Effective dose: values, coefficients and their sources",
      "msg.dose_record": "Dose record of this study",
      "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)", "chart.dlp_study": "DLP per study (mGy·cm)",
      "chart.ctdivol_study": "mean CTDIvol per study (mGy)", "chart.activity": "Activity (MBq)",
      "chart.per_kg": "Activity per kg (MBq/kg)", "chart.level": "Reference level",
      "chart.panel_ct_high": "Diagnostic-dose CT", "chart.axis_ct_high": "diagnostic",
      "chart.panel_ct_low": "Low-dose CT (e.g. attenuation correction of PET-CT, SPECT-CT): own axis",
      "chart.axis_ct_low": "low-dose", "chart.panel_nm_high": "Higher activities",
      "chart.axis_nm_high": "higher", "chart.panel_nm_low": "Lower activities: own axis",
      "chart.axis_nm_low": "lower",
      "col.protocol": "Protocol", "col.description": "Description", "col.standard_name": "Standard name", "col.agent": "Radiopharmaceutical",
      "col.n": "N", "col.studies": "Studies", "col.date": "Date", "col.study": "Study", "col.group": "Protocol / agent",
      "col.quantity": "Quantity", "col.value": "Value", "col.level": "Level", "col.ratio": "× level",
      "col.reason": "Reason", "col.level_name": "Reference", "col.orthanc": "Orthanc", "col.name": "Name",
      "col.modality": "Modality", "col.per": "Per", "col.status": "Status", "col.source": "Source",
      "col.year": "Year", "col.match": "Applies to", "col.age": "Age band", "col.file": "File",
      "col.error": "Error", "col.first_seen": "First seen", "col.last_seen": "Last seen",
      "col.attempts": "Attempts", "col.origin": "Source", "col.ct_n": "N (CT E)",
      "col.ct_median": "CT E median (mSv)", "col.ct_mean": "CT E mean (mSv)", "col.nm_n": "N (NM E)",
      "col.nm_median": "NM E median (mSv)", "col.nm_mean": "NM E mean (mSv)", "col.total_n": "N (total)",
      "col.total_median": "Total E median (mSv)", "col.total_mean": "Total E mean (mSv)",
      "col.coef_sources": "Coefficient sources", "col.part": "Part", "col.e": "E (mSv)",
      "col.coefficient": "Coefficient", "col.coef_source": "Coefficient source / note",
      "col.ctdivol_p95": "CTDIvol p95", "col.dlp_p95": "DLP p95",
      "reason.reference_level": "above {factor} × the level", "reason.p95": "above p95 of its group",
      "status.official": "official DRL (country: see the source)", "status.proposed": "proposed, not an adopted DRL",
      "status.example": "example, not an official DRL", "kind.ct_event": "CT event", "kind.ct_study": "CT exam",
      "kind.administration": "administration", "part.ct_total": "CT total", "part.nm_total": "NM total",
      "part.total": "Total (CT + NM)", "part.event": "CT event", "part.admin": "Administration",
      "part.notes": "Notes", "unit.k": "mSv/(mGy·cm)", "unit.e": "mSv/MBq", "open": "open in Orthanc",
      "q.ctdivol_mgy": "CTDIvol", "q.dlp_mgycm": "DLP", "q.activity_mbq": "activity",
      "q.activity_mbq_per_kg": "activity per kg", "per.event": "irradiation event",
      "per.study": "examination (total)", "per.administration": "administration",
      "col.ssde": "SSDE (mGy)", "col.ssde_size": "Patient size for SSDE (mm)",
      "col.ssde_median": "SSDE median (mGy)", "col.ssde_n": "N with SSDE",
      "col.net_activity": "Net activity (MBq)", "col.activity_rule": "Activity used",
      "col.start_source": "Injection time from", "col.pre_measured": "Pre-injection measured",
      "col.post_measured": "Residual measured", "col.plausibility": "Plausibility",
      "col.plausibility_warnings": "Implausible activity (warnings)",
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
      "rule.nm_header_no_start_time": "NM image header, no injection time",
      "startsrc.rrdsr": "dose report (RRDSR)", "startsrc.header_start_datetime": "header date and time",
      "startsrc.header_start_time_AcquisitionDate": "header time + acquisition date",
      "startsrc.header_start_time_StudyDate": "header time + study date",
      "startsrc.minus_1day": "previous day (injected before midnight)",
      "warn.plausibility": "Implausible activity",
      "f.manufacturer": "Manufacturer", "f.model": "Scanner model", "f.any": "any", "f.scanner": "Scanner",
      "f.standard_name": "Standard name",
      "f.standard_name_title": "The whole standard name, any case: a CT event's or administration's own, a " +
        "study's own or any of its events' or administrations'",
      "f.hint": "Filters match part of the text, any case (a standard name: the whole name); suggestions appear as you type.",
      "empty.filtered": "no exam matches; filters match part of the text, any case (a standard name: the whole name)",
      "error.server": "error from the server", "choices.n": "{n} ×",
      "col.modalities": "Modalities", "col.state": "State", "col.first": "First", "col.last": "Last",
      "col.found": "Found", "col.corrected": "Corrected", "col.uid": "StudyInstanceUID", "col.log": "Log",
      "col.stuck": "Stuck", "col.selected": "Selected", "col.forwarded": "Forwarded", "col.missing": "Missing",
      "col.ctdivol_median": "CTDIvol median (mGy)", "col.ctdivol_q1": "CTDIvol Q1",
      "col.ctdivol_q3": "CTDIvol Q3", "col.ctdivol_mean": "CTDIvol mean", "col.ctdivol_p75": "CTDIvol p75",
      "col.dlp_median": "DLP median (mGy·cm)", "col.dlp_q1": "DLP Q1", "col.dlp_q3": "DLP Q3",
      "col.dlp_mean": "DLP mean", "col.dlp_p75": "DLP p75",
      "col.activity_median": "Activity median (MBq)", "col.activity_q1": "Activity Q1 (MBq)",
      "col.activity_q3": "Activity Q3 (MBq)", "col.activity_mean": "Activity mean (MBq)",
      "col.activity_p95": "Activity p95 (MBq)", "col.per_kg_median": "Activity per kg median (MBq/kg)",
      "col.per_kg_mean": "Activity per kg mean (MBq/kg)", "col.per_kg_p95": "Activity per kg p95 (MBq/kg)",
      "col.e_mean": "Effective dose mean (mSv)",
      "chart.scatter": "Administered activity vs patient weight", "chart.weight": "Patient weight (kg)",
      "status.official_uk": "UK official DRL", "status.official_de": "German official DRL",
      "status.official_kr": "Korean official DRL", "status.official_eu": "European official DRL"
    },
    ko: {
      "lang.toggle": "English", "nav.home": "홈", "nav.research": "연구 PACS", "nav.dose": "선량", "nav.patients": "환자", "nav.names": "표준 검사명", "nav.scanners": "장비",
      "nav.report": "보고서", "nav.alerts": "선량 경보", "nav.projects": "연구 프로젝트",
      "nav.orthanc": "Orthanc 탐색기", "index.title": "nmdose",
      "research.title": "연구 PACS: 연도별 검사 수", "research.progress": "진행 상황",
      "research.census": "전수 조사", "research.retrieve": "가져오기",
      "research.yearly": "연도 및 검사 종류별 검사 수",
      "research.new": "승인 대기 중인 새 검사명", "research.corrections": "모달리티 수정",
      "research.failed": "가져오기 실패",
      "grid.year": "{year}년", "grid.total_row": "합계", "col.total": "합계", "col.no_date": "날짜 없음",
      "grid.cell": "검사 {studies}건: 가져옴 {retrieved}, 대기 {pending}, 실패 {failed}, 대상 아님 {not_target}",
      "grid.hint": "칸: 가져온 검사 / 전체 검사 (가져오기 대상이 없으면 전체 검사 수만). 마우스를 올리면 상태별 " +
        "수가 보입니다. 열 제목을 누르면 정렬됩니다.",
      "grid.csv": "CSV (표)", "grid.xlsx": "XLSX (표)", "col.accept": "선택",
      "research.accept": "선택한 검사명 승인", "research.accept_hint": "승인한 검사명은 가져오기 대상이 되어 " +
        "다음 가져오기 실행 때 해당 검사를 가져옵니다 (config:write 권한 필요).",
      "accept.none": "검사명을 하나 이상 선택하세요.",
      "accept.done": "{by} 님이 검사명 {n}개를 승인했습니다. 이제 {studies}건의 검사가 가져오기 대상입니다.",
      "accept.done_db": "{by} 님이 검사명 {n}개를 승인했습니다. 이제 {studies}건의 검사가 가져오기 대상입니다. " +
        "이곳의 설정 파일은 읽기 전용이라 승인 내용은 데이터베이스에 저장되었습니다.",
      "reason.majority": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있지만, 같은 검사명의 검사 대부분" +
        "({studies}건 중 {agreeing}건)이 {expected}입니다: {corrected}(으)로 집계합니다.",
      "reason.majority_tie": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있습니다. 같은 검사명의 검사가 " +
        "고르게 나뉘어 ({studies}건 중 {agreeing}건이 {expected}, 알파벳 순으로 선택) {corrected}(으)로 집계합니다.",
      "reason.rule": "PACS에는 이 검사의 모달리티가 {found}(으)로 되어 있지만, 모달리티 규칙 \u201c{rule}\u201d에 " +
        "따르면 이 검사명은 {expected}입니다: {corrected}(으)로 집계합니다.",
      "research.forward": "선량 PACS 전송 미완료",
      "prog.never": "아직 실행 안 함", "prog.run.running": "실행 중", "prog.run.done": "완료",
      "prog.run.failed": "실패", "prog.run.interrupted": "중단됨 (다음 실행에서 이어서 진행)",
      "prog.days": "날짜 범위 진행", "prog.studies": "검사", "prog.targets": "가져오기 대상",
      "prog.failed_queries": "실패한 조회", "prog.new_descriptions": "새 검사명",
      "prog.instances": "인스턴스", "prog.state.done": "완료", "prog.state.pending": "대기",
      "prog.state.moving": "이동 중", "prog.state.verifying": "확인 중", "prog.state.partial": "일부만",
      "prog.state.failed": "실패",
      "research.estimate": "백필 예상", "est.pending": "대기 중인 검사",
      "est.time": "가져오기 소요 시간", "est.ends": "완료 예상", "est.beyond": "3년 이후", "est.failed": "실패",
      "est.none": "대기 중인 검사 없음",
      "research.imports": "가져온 폴더 (드롭 폴더)", "col.import_started": "시작",
      "col.import_folder": "폴더 (해시)", "col.import_outcome": "결과", "col.import_files": "파일",
      "col.import_stored": "저장", "col.import_skipped": "건너뜀", "col.import_bad": "잘못된 파일",
      "col.import_studies": "검사", "col.import_mb": "크기 (MB)", "col.import_seconds": "초",
      "col.import_error": "오류",
      "dose.title": "프로토콜별 선량", "dose.ct_protocol": "CT: 촬영 프로토콜별 체적 CT 선량지수(CTDIvol) 및 선량길이곱(DLP)",
      "dose.ct_description": "CT: 검사명별 (검사 단위)", "dose.monthly": "월별 검사당 DLP 중앙값",
      "dose.activity": "방사성의약품별 투여 방사능",
      "f.from": "시작일", "f.to": "종료일", "f.protocol": "프로토콜", "f.description": "검사명",
      "f.station": "장비", "f.modality": "모달리티", "f.agent": "방사성의약품", "f.sex": "성별",
      "f.apply": "적용", "f.csv": "CSV (이벤트)",
      "study.title": "검사 선량", "study.open": "Orthanc 탐색기에서 열기", "study.ct": "CT 조사 이벤트",
      "study.nm": "방사성의약품 투여", "study.objects": "원본 객체",
      "state.retrieved": "가져오기 완료", "state.pending": "대기", "state.failed": "실패",
      "state.not_target": "대상 아님", "empty": "데이터 없음", "error": "오류",
      "f.age": "나이 (세)", "f.weight": "체중 (kg)", "f.min": "최소 (포함)", "f.max": "최대 (미포함)",
      "f.xlsx": "XLSX (이벤트, 프로토콜별 시트)", "f.xlsx_activity": "XLSX (투여 방사능, 의약품별 시트)",
      "dose.standard_name": "표준 검사명별 (검사 단위)", "dose.sn_none": "(표준 검사명 없음)",
      "dose.standard_name_hint": "표준 검사명 페이지의 이름으로 묶은 검사 (검사당 값 하나: CTDIvol 평균, 총 DLP); " +
        "투여 방사능은 투여 단위. 진단참고수준은 표준 검사명과 맞출 수 있습니다.",
      "f.csv_names": "CSV (표준 검사명별)",
      "dose.box_hint": "상자: 사분위수; 선: 중앙값; 수염: 1.5 IQR 이내의 최댓값·최솟값. " +
        "빨간 점선: 진단참고수준 (주황: 제안값 또는 예시).",
      "dose.effective": "검사별 유효선량 (검사 단위)", "dose.outliers": "이상값",
      "dose.outliers_hint": "표시 기준: 해당 검사에 적용되는 공식 진단참고수준의 {factor}배 초과 (참고수준은 " +
        "환자 개인이 아니라 기관의 중앙값에 대한 값), 또는 필터된 자료에서 값이 {n}개 이상인 프로토콜·의약품 " +
        "그룹의 95 백분위수 초과.",
      "dose.outliers_hint_all": "표시 기준: 해당 검사에 적용되는 진단참고수준(공식, 제안, 예시: 각각 표시)의 " +
        "{factor}배 초과, 또는 필터된 자료에서 값이 {n}개 이상인 프로토콜·의약품 그룹의 95 백분위수 초과.",
      "field.study_date": "검사일", "field.accession_number": "검사 번호",
      "field.study_description": "검사명", "field.manufacturer": "제조사",
      "field.model_name": "장비 모델", "field.station_name": "장비명", "field.patient_age_years": "환자 나이 (세)",
      "field.patient_sex": "환자 성별", "field.patient_weight_kg": "환자 체중 (kg)",
      "field.ct_event_count": "CT 조사 이벤트 수",
      "field.ct_total_dlp_mgycm": "총 DLP: 조사 이벤트의 합 (mGy·cm)",
      "field.ct_reported_total_dlp_mgycm": "장비가 보고한 총 DLP (mGy·cm)",
      "field.ct_effective_dose_msv": "CT 유효선량 (mSv)",
      "field.nm_total_activity_mbq": "총 투여 방사능 (MBq)",
      "field.nm_effective_dose_msv": "방사성의약품 유효선량 (mSv)",
      "field.total_effective_dose_msv": "총 유효선량, CT + 핵의학 (mSv)", "field.warnings": "경고",
      "col.field": "항목", "study.accession": "검사 번호", "study.uid": "검사 UID (StudyInstanceUID)",
      "note.nm_part_missing": "합계 없음: 핵의학 부분 없음 (이 PET/핵의학 검사의 방사성의약품 투여 기록을 " +
        "찾지 못함)",
      "study.dlp_more": "조사 이벤트의 합({sum} mGy·cm)이 장비가 보고한 총 DLP({reported} mGy·cm)보다 " +
        "큽니다: 검사의 이벤트가 둘 이상의 선량 보고서(예: 두 객체로 나뉜 보고서)로 왔고, 각 보고서는 자기 " +
        "이벤트만 합산합니다. 통계에는 합을 사용합니다.",
      "study.dlp_less": "장비가 보고한 총 DLP({reported} mGy·cm)가 받은 조사 이벤트의 합({sum} mGy·cm)보다 " +
        "큽니다: 일부 이벤트가 받은 보고서에 없습니다. 통계에는 합을 사용합니다.",
      "col.ordinal": "#", "col.region": "촬영 부위", "col.acq_type": "촬영 방식",
      "col.ctdivol": "CTDIvol (mGy)", "col.dlp": "DLP (mGy·cm)", "col.phantom": "팬텀", "col.kvp": "kVp",
      "col.radionuclide": "방사성핵종", "col.activity": "투여 방사능 (MBq)", "col.start": "투여 시각",
      "col.per_kg": "MBq/kg", "col.sop": "객체 UID (SOP Instance UID)", "col.kind": "객체 종류", "col.warnings": "경고",
      "col.admin_source": "읽은 곳",
      "objkind.ct_rdsr": "CT 선량 보고서 (RDSR)", "objkind.ct_esr": "CT 선량 보고서 (Enhanced SR)",
      "objkind.radiopharmaceutical_rdsr": "방사성의약품 선량 보고서 (RRDSR)",
      "objkind.pet_image": "PET 영상 헤더", "objkind.nm_image": "핵의학 영상 헤더",
      "objkind.ct_dose_screen": "CT 선량 화면", "objkind.other": "기타",
      "objstatus.ok": "읽음", "objstatus.not_dose": "선량 정보 없음", "sex.M": "남", "sex.F": "여",
      "sex.O": "기타", "phantom.head16": "머리 (16 cm)", "phantom.body32": "몸통 (32 cm)",
      "acq.Spiral Acquisition": "나선형", "acq.Sequenced Acquisition": "축방향 연속",
      "acq.Constant Angle Acquisition": "위치결정 촬영 (고정 각도)",
      "acq.Stationary Acquisition": "고정 (테이블 정지)", "acq.Free Acquisition": "자유",
      "acq.Cone Beam Acquisition": "콘빔",
      "monthly.group": "검사 종류 (검사명)", "monthly.top": "가장 많은 {n}개",
      "monthly.hint": "검사별 총 DLP의 중앙값 (검사당 한 값; 위치결정 촬영은 n에 포함되지 않음), 월 및 " +
        "검사명별; 검사가 없는 달은 빈칸.",
      "chart.month": "월", "chart.monthly_y": "검사당 DLP 중앙값 (mGy·cm)", "monthly.none": "(검사명 없음)",
      "col.nm_missing_n": "합계에서 제외: 핵의학 부분 없음",
      "f.reason": "사유", "f.all": "전체", "f.levels": "진단참고수준", "levels.official": "공식 진단참고수준만",
      "levels.all": "제안값·예시 진단참고수준 포함", "page.prev": "이전", "page.next": "다음",
      "f.acknowledged": "확인 여부", "ack.no": "미확인 (검토 대상)", "ack.yes": "확인됨", "ack.all": "전체",
      "ack.counts": "확인 {yes}건, 검토 대상 {no}건", "ack.button": "확인", "ack.again": "수정",
      "ack.comment": "의견 (필수)", "ack.save": "저장", "ack.cancel": "취소", "ack.by": "{by}, {at}",
      "ack.empty": "의견을 입력하세요.", "col.ack": "확인", "col.alert_ack": "경보",
      "ack.denied": "권한 없음: 확인에는 alerts:ack 권한이 필요합니다",
      "page.of": "{from}–{to} / 전체 {total}", "col.threshold": "표시 기준값",
      "dose.levels": "진단참고수준 (DRL)", "dose.dead_letter": "처리 실패한 선량 파일",
      "study.effective": "유효선량: 값, 환산계수와 출처",
      "msg.dose_record": "이 검사의 선량 기록",
      "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)", "chart.dlp_study": "검사당 선량길이곱 DLP (mGy·cm)",
      "chart.ctdivol_study": "검사당 평균 CTDIvol (mGy)", "chart.activity": "투여 방사능 (MBq)",
      "chart.per_kg": "체중당 투여 방사능 (MBq/kg)", "chart.level": "진단참고수준 (DRL)",
      "chart.panel_ct_high": "진단 선량 CT", "chart.axis_ct_high": "진단 선량",
      "chart.panel_ct_low": "저선량 CT (예: PET-CT, SPECT-CT의 감쇠보정): 별도 축",
      "chart.axis_ct_low": "저선량", "chart.panel_nm_high": "높은 투여 방사능",
      "chart.axis_nm_high": "높음", "chart.panel_nm_low": "낮은 투여 방사능: 별도 축",
      "chart.axis_nm_low": "낮음",
      "col.protocol": "프로토콜", "col.description": "검사명", "col.standard_name": "표준 검사명", "col.agent": "방사성의약품",
      "col.n": "건수 (N)", "col.studies": "검사 수", "col.date": "날짜", "col.study": "검사", "col.group": "프로토콜 / 의약품",
      "col.quantity": "선량 지표", "col.value": "값", "col.level": "진단참고수준 (DRL)", "col.ratio": "DRL 대비 배수",
      "col.reason": "사유", "col.level_name": "적용한 진단참고수준", "col.orthanc": "Orthanc 링크", "col.name": "이름",
      "col.modality": "모달리티", "col.per": "적용 단위", "col.status": "상태", "col.source": "출처",
      "col.year": "연도", "col.match": "적용 대상", "col.age": "연령대", "col.file": "파일",
      "col.error": "오류", "col.first_seen": "처음", "col.last_seen": "마지막",
      "col.attempts": "시도", "col.origin": "출처", "col.ct_n": "검사 수 (CT 유효선량)",
      "col.ct_median": "CT 유효선량 중앙값 (mSv)", "col.ct_mean": "CT 유효선량 평균 (mSv)",
      "col.nm_n": "검사 수 (핵의학 유효선량)", "col.nm_median": "핵의학 유효선량 중앙값 (mSv)",
      "col.nm_mean": "핵의학 유효선량 평균 (mSv)", "col.total_n": "검사 수 (총 유효선량)",
      "col.total_median": "총 유효선량 중앙값 (mSv)", "col.total_mean": "총 유효선량 평균 (mSv)",
      "col.coef_sources": "환산계수 출처", "col.part": "구분", "col.e": "유효선량 (mSv)",
      "col.coefficient": "환산계수", "col.coef_source": "환산계수 출처 / 비고",
      "col.ctdivol_p95": "CTDIvol 95 백분위수", "col.dlp_p95": "DLP 95 백분위수",
      "reason.reference_level": "진단참고수준의 {factor}배 초과", "reason.p95": "그룹 95 백분위수 초과",
      "status.official": "공식 진단참고수준 (국가는 출처 참조)", "status.proposed": "제안값, 채택된 진단참고수준 아님",
      "status.example": "예시, 공식 진단참고수준 아님", "kind.ct_event": "CT 이벤트", "kind.ct_study": "CT 검사",
      "kind.administration": "투여", "part.ct_total": "CT 합계", "part.nm_total": "핵의학 합계",
      "part.total": "합계 (CT + 핵의학)", "part.event": "CT 이벤트", "part.admin": "투여",
      "part.notes": "비고", "unit.k": "mSv/(mGy·cm)", "unit.e": "mSv/MBq", "open": "Orthanc에서 열기",
      "q.ctdivol_mgy": "체적 CT 선량지수 (CTDIvol)", "q.dlp_mgycm": "선량길이곱 (DLP)",
      "q.activity_mbq": "투여 방사능", "q.activity_mbq_per_kg": "체중당 투여 방사능", "per.event": "조사 이벤트",
      "per.study": "검사 (합계)", "per.administration": "투여",
      "col.ssde": "크기 보정 선량 SSDE (mGy)", "col.ssde_size": "SSDE 환자 크기 (mm)",
      "col.ssde_median": "SSDE 중앙값 (mGy)", "col.ssde_n": "SSDE 있는 건수",
      "col.net_activity": "순 투여 방사능 (MBq)", "col.activity_rule": "사용한 방사능",
      "col.start_source": "투여 시각 출처", "col.pre_measured": "투여 전 측정 시각",
      "col.post_measured": "잔류 측정 시각", "col.plausibility": "타당성",
      "col.plausibility_warnings": "비정상 투여 방사능 (경고)",
      "size.water_equivalent_diameter": "물 등가 직경", "size.effective_diameter": "유효 직경",
      "size.lateral_dimension": "좌우 폭", "size.ap_dimension": "전후 두께",
      "size.lateral_plus_ap": "좌우 폭 + 전후 두께", "ssde.method": "방법",
      "rule.rrdsr_administered": "선량 보고서(RRDSR)의 투여 방사능",
      "rule.rrdsr_net_pre_post": "투여 전·후 측정값의 차 (RRDSR)",
      "rule.pet_header_start_datetime": "PET 영상 헤더, 투여 일시 기준",
      "rule.pet_header_start_time": "PET 영상 헤더, 투여 시각을 날짜에 배치",
      "rule.pet_header_no_start_time": "PET 영상 헤더, 투여 시각 없음",
      "rule.nm_header_start_datetime": "핵의학 영상 헤더, 투여 일시 기준",
      "rule.nm_header_start_time": "핵의학 영상 헤더, 투여 시각을 날짜에 배치",
      "rule.nm_header_no_start_time": "핵의학 영상 헤더, 투여 시각 없음",
      "startsrc.rrdsr": "선량 보고서 (RRDSR)", "startsrc.header_start_datetime": "헤더의 일시",
      "startsrc.header_start_time_AcquisitionDate": "헤더 시각 + 획득 날짜",
      "startsrc.header_start_time_StudyDate": "헤더 시각 + 검사 날짜",
      "startsrc.minus_1day": "전날 (자정 전 투여)",
      "warn.plausibility": "비정상 투여 방사능",
      "f.manufacturer": "제조사", "f.model": "장비 모델", "f.any": "전체", "f.scanner": "장비 (표시 이름)",
      "f.standard_name": "표준 검사명",
      "f.standard_name_title": "표준 검사명 전체 (대소문자 무시): CT 조사 이벤트·투여는 자신의 이름, 검사는 " +
        "자신의 이름 또는 그 이벤트·투여 중 하나의 이름",
      "f.hint": "필터는 대소문자 구분 없이 텍스트의 일부와 일치합니다 (표준 검사명은 전체 이름). 입력하면 추천 값이 나타납니다.",
      "empty.filtered": "일치하는 검사 없음: 필터는 대소문자 구분 없이 텍스트의 일부와 일치합니다 (표준 검사명은 전체 이름)",
      "error.server": "서버 오류", "choices.n": "{n}건",
      "col.modalities": "모달리티", "col.state": "상태", "col.first": "최초 검사일", "col.last": "최근 검사일",
      "col.found": "확인된 모달리티", "col.corrected": "수정된 모달리티", "col.uid": "검사 UID (StudyInstanceUID)",
      "col.log": "로그", "col.stuck": "정체", "col.selected": "선택", "col.forwarded": "전송 완료",
      "col.missing": "누락",
      "col.ctdivol_median": "CTDIvol 중앙값 (mGy)", "col.ctdivol_q1": "CTDIvol 1사분위수",
      "col.ctdivol_q3": "CTDIvol 3사분위수", "col.ctdivol_mean": "CTDIvol 평균",
      "col.ctdivol_p75": "CTDIvol 75 백분위수",
      "col.dlp_median": "DLP 중앙값 (mGy·cm)", "col.dlp_q1": "DLP 1사분위수", "col.dlp_q3": "DLP 3사분위수",
      "col.dlp_mean": "DLP 평균", "col.dlp_p75": "DLP 75 백분위수",
      "col.activity_median": "투여 방사능 중앙값 (MBq)", "col.activity_q1": "투여 방사능 1사분위수 (MBq)",
      "col.activity_q3": "투여 방사능 3사분위수 (MBq)", "col.activity_mean": "투여 방사능 평균 (MBq)",
      "col.activity_p95": "투여 방사능 95 백분위수 (MBq)",
      "col.per_kg_median": "체중당 투여 방사능 중앙값 (MBq/kg)",
      "col.per_kg_mean": "체중당 투여 방사능 평균 (MBq/kg)",
      "col.per_kg_p95": "체중당 투여 방사능 95 백분위수 (MBq/kg)",
      "col.e_mean": "유효선량 평균 (mSv)",
      "chart.scatter": "환자 체중 대비 투여 방사능", "chart.weight": "환자 체중 (kg)",
      "status.official_uk": "영국 공식 진단참고수준", "status.official_de": "독일 공식 진단참고수준",
      "status.official_kr": "국내 공식 진단참고수준", "status.official_eu": "유럽 공식 진단참고수준"
    }
  };
  var STATES = ["retrieved", "pending", "failed", "not_target"];
  var COLORS = ["#2e7d32", "#f9a825", "#c62828", "#9e9e9e", "#1565c0", "#6a1b9a", "#00838f", "#ef6c00"];
  var body = document.body;
  var root = body.getAttribute("data-root");          // the /nmdose/ folder, relative
  var orthancRoot = root + "../";                      // Orthanc's own root
  var lang = localStorage.getItem("nmdose.lang") || body.getAttribute("data-default-lang") || "en";
  var charts = {};

  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key; }

  // A translated text with its {name} placeholders replaced by `vars` (an object, or its JSON).
  function tv(key, vars) {
    var v = typeof vars === "string" ? JSON.parse(vars) : vars || {};
    return t(key).replace(/\{(\w+)\}/g, function (m, name) { return name in v ? String(v[name]) : m; });
  }

  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = tv(el.getAttribute("data-i18n"), el.getAttribute("data-i18n-vars"));
    });
    document.querySelectorAll("[data-i18n-title]").forEach(function (el) {
      el.title = tv(el.getAttribute("data-i18n-title"), el.getAttribute("data-i18n-title-vars"));
    });
    Object.keys(charts).forEach(function (k) { if (charts[k].relabel) charts[k].relabel(); });
  }

  function api(path, params) {
    var q = new URLSearchParams(params || {}).toString();
    return window.nmdoseFetch(root + "api/" + path + (q ? "?" + q : ""), {credentials: "same-origin"}).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || r.statusText);
        return data;
      });
    });
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // Fill <table id=...> with rows; `columns` is a list of [key, header] or [key, header, fn(row) -> Node|text];
  // `emptyKey`: the label of a table without rows (default: "no data", or how filters match on the dose page).
  function table(id, rows, columns, emptyKey) {
    var el = document.getElementById(id);
    if (!el) return;
    el.replaceChildren();
    var head = el.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      if (c[1].indexOf("col.") === 0) th.setAttribute("data-i18n", c[1]);  // translated header
      th.textContent = t(c[1]);
      head.appendChild(th);
    });
    var tb = el.createTBody();
    if (!rows.length) {
      var td = tb.insertRow().insertCell();
      td.colSpan = columns.length;
      // a filter that gives no rows says how filters match, instead of a bare "no data"
      var key = emptyKey || (Object.keys(doseFilters).length && el.matches(FILTERED) ? "empty.filtered" : "empty");
      td.setAttribute("data-i18n", key);
      td.textContent = t(key);
      td.className = key === "empty.filtered" ? "hint" : "";
    }
    rows.forEach(function (row) {
      var tr = tb.insertRow();
      columns.forEach(function (c) {
        var cell = tr.insertCell();
        var v = c[2] ? c[2](row) : fmt(row[c[0]]);
        if (v instanceof Node) cell.appendChild(v); else cell.textContent = v;
      });
    });
    el.setAttribute("data-rows", String(rows.length));
    el.removeAttribute("data-stale");
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  // A text node that follows the language toggle.
  function label(key, vars) {
    var span = document.createElement("span");
    span.setAttribute("data-i18n", key);
    if (vars) span.setAttribute("data-i18n-vars", JSON.stringify(vars));
    span.textContent = tv(key, vars);
    return span;
  }

  // Set an element's translated text with placeholders (kept for the language toggle).
  function setLabel(el, key, vars) {
    el.setAttribute("data-i18n", key);
    el.setAttribute("data-i18n-vars", JSON.stringify(vars || {}));
    el.textContent = tv(key, vars);
  }

  // A server error: a translated prefix (follows the language toggle) and the server's own message.
  function errorText(err) {
    var span = document.createElement("span");
    span.appendChild(label("error.server"));
    span.appendChild(document.createTextNode(": " + err.message));
    return span;
  }

  function showError(id, err) {
    var el = document.getElementById(id);
    if (el) { el.replaceChildren(); el.insertRow().insertCell().appendChild(errorText(err)); }
  }

  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    var canvas = document.getElementById(id);
    config.options = Object.assign({animation: false, responsive: true, maintainAspectRatio: false},
                                   config.options || {});
    charts[id] = new Chart(canvas, config);
    canvas.removeAttribute("data-stale");
    var points = config.data.datasets.reduce(function (n, d) {
      return n + d.data.filter(function (x) { return x !== null && x !== 0; }).length;
    }, 0);
    canvas.setAttribute("data-points", String(points));
    return charts[id];
  }

  // Box plots and reference levels on floating-bar charts. A dataset with `box` (one
  // {q1, median, q3, whisker_low, whisker_high} or null per label) gets a median line and whiskers; one with
  // `refs` (a list of {value, status, name} per label) gets a dashed line per level across its bar, on the
  // dataset's own y axis. The number of level lines drawn goes to the canvas's data-ref-lines.
  function barAt(chart, di, i) {
    var meta = chart.getDatasetMeta(di);
    if (meta.hidden || !meta.data[i]) return null;
    var bar = meta.data[i].getProps(["x", "width"], true);
    return {x: bar.x, half: bar.width / 2, y: chart.scales[meta.yAxisID]};
  }

  var boxPlugin = {
    id: "nmdoseBox",
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx;
      var lines = 0;
      chart.data.datasets.forEach(function (ds, di) {
        (ds.box || []).forEach(function (b, i) {
          var bar = b && barAt(chart, di, i);
          if (!bar) return;
          var y = bar.y;
          ctx.save();
          ctx.strokeStyle = "#222";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(bar.x - bar.half, y.getPixelForValue(b.median));
          ctx.lineTo(bar.x + bar.half, y.getPixelForValue(b.median));
          ctx.stroke();
          ctx.lineWidth = 1;
          [[b.q3, b.whisker_high], [b.q1, b.whisker_low]].forEach(function (w) {
            if (w[1] === null || w[1] === undefined) return;
            ctx.beginPath();
            ctx.moveTo(bar.x, y.getPixelForValue(w[0]));
            ctx.lineTo(bar.x, y.getPixelForValue(w[1]));
            ctx.moveTo(bar.x - bar.half / 2, y.getPixelForValue(w[1]));
            ctx.lineTo(bar.x + bar.half / 2, y.getPixelForValue(w[1]));
            ctx.stroke();
          });
          ctx.restore();
        });
        (ds.refs || []).forEach(function (levels, i) {
          var bar = levels && levels.length && barAt(chart, di, i);
          if (!bar) return;
          levels.forEach(function (lv) {
            var py = bar.y.getPixelForValue(lv.value);
            ctx.save();
            ctx.strokeStyle = lv.status === "official" ? "#d50000" : "#ff6d00";
            ctx.lineWidth = 2;
            ctx.setLineDash([6, 3]);
            ctx.beginPath();
            ctx.moveTo(bar.x - bar.half * 1.4, py);
            ctx.lineTo(bar.x + bar.half * 1.4, py);
            ctx.stroke();
            ctx.restore();
            lines += 1;
          });
        });
      });
      chart.canvas.setAttribute("data-ref-lines", String(lines));
    }
  };
  Chart.register(boxPlugin);
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;  // Korean labels in the charts too

  // A floating-bar box chart of up to two measures per group, each on its own y axis (left "y", right "y1").
  // `series`: [{key: i18n label, unit, rows, color}], rows from /api/dose/box (same group column `by`).
  // `split` ("ct" or "nm", the dose page): groups an order of magnitude apart get two panels, each with its own
  // axes (splitGroups); the low groups go to a second canvas `<id>-low` made after the first one's box.
  function boxChart(id, by, series, split) {
    var labels = [];
    series.forEach(function (s) {
      s.rows.forEach(function (r) { if (labels.indexOf(r[by]) < 0) labels.push(r[by]); });
    });
    labels.sort();
    var lowId = id + "-low";
    var parts = split ? splitGroups(labels, by, series[0].rows) : null;
    if (!parts) {
      hideLowPanel(lowId);
      return boxPanel(id, by, series, labels, null);
    }
    var c = boxPanel(id, by, series, parts.high, {kind: split, panel: "high"});
    boxPanel(lowPanel(id, lowId), by, series, parts.low, {kind: split, panel: "low"});
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
    if (charts[lowId]) { charts[lowId].destroy(); delete charts[lowId]; }
    ["data-points", "data-ref-lines", "data-stale", "data-panel", "data-groups", "data-y-max"].forEach(
      function (a) { canvas.removeAttribute(a); });
    canvas.parentNode.hidden = true;
  }

  // One box chart of `labels`; `split` {kind, panel}: its title and axis titles say which panel it is
  // (PANEL_KEYS: [title, axis]), the canvas carries data-panel, data-groups (JSON) and data-y-max (the left
  // axis's top) for the browser tests.
  var PANEL_KEYS = {
    ct: {high: ["chart.panel_ct_high", "chart.axis_ct_high"], low: ["chart.panel_ct_low", "chart.axis_ct_low"]},
    nm: {high: ["chart.panel_nm_high", "chart.axis_nm_high"], low: ["chart.panel_nm_low", "chart.axis_nm_low"]}
  };
  function boxPanel(id, by, series, labels, split) {
    var scales = {};
    var keys = split ? PANEL_KEYS[split.kind][split.panel] : null;
    var axisTitle = function (s) { return keys ? s.unit + " · " + t(keys[1]) : s.unit; };
    var datasets = series.map(function (s, k) {
      var axis = k === 0 ? "y" : "y1";
      var byGroup = {};
      s.rows.forEach(function (r) { byGroup[r[by]] = r; });
      var rows = labels.map(function (l) { return byGroup[l] || null; });
      var top = 0;
      rows.forEach(function (r) {
        if (!r) return;
        top = Math.max(top, r.whisker_high || 0, r.q3 || 0);
        (r.levels || []).forEach(function (lv) { top = Math.max(top, lv.value); });
      });
      scales[axis] = {position: k === 0 ? "left" : "right", beginAtZero: true, suggestedMax: top * 1.05,
                      title: {display: true, text: axisTitle(s)}, grid: {drawOnChartArea: k === 0}};
      return {label: t(s.key), i18n: s.key, yAxisID: axis, backgroundColor: s.color + "99",
              borderColor: s.color, borderWidth: 1,
              data: rows.map(function (r) { return r ? [r.q1, r.q3] : null; }),
              box: rows, refs: rows.map(function (r) { return r ? r.levels || [] : []; })};
    });
    datasets.push({label: t("chart.level"), i18n: "chart.level", type: "line", data: [],
                   borderColor: "#d50000", borderDash: [6, 3], backgroundColor: "#d50000"});
    var titleKey = keys ? keys[0] : null;
    var c = chart(id, {type: "bar", data: {labels: labels, datasets: datasets}, options: {scales: scales,
      plugins: {title: {display: !!split, text: titleKey ? t(titleKey) : ""},
                tooltip: {callbacks: {label: function (item) {
        var b = item.dataset.box && item.dataset.box[item.dataIndex];
        if (!b) return item.dataset.label;
        return item.dataset.label + ": " + fmt(b.median) + " (Q1 " + fmt(b.q1) + ", Q3 " + fmt(b.q3) +
          ", n " + b.n + ")";
      }}}}}});
    var canvas = document.getElementById(id);
    if (split) {
      canvas.setAttribute("data-panel", split.panel);
    } else {
      canvas.removeAttribute("data-panel");
    }
    canvas.setAttribute("data-groups", JSON.stringify(labels));
    canvas.setAttribute("data-y-max", String(c.scales.y ? c.scales.y.max : ""));
    c.relabel = function () {
      c.data.datasets.forEach(function (ds) { ds.label = t(ds.i18n); });
      if (titleKey) c.options.plugins.title.text = t(titleKey);
      series.forEach(function (s, k) { c.options.scales[k === 0 ? "y" : "y1"].title.text = axisTitle(s); });
      c.update();
    };
    return c;
  }

  // ----- research page
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

  function pollStatus() {
    [["census/status", "census-status", censusText], ["retrieve/status", "retrieve-status", retrieveText]]
      .forEach(function (p) {
        window.nmdoseFetch(root + p[0], {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
          var el = document.getElementById(p[1]);
          el.textContent = p[2](d);
        }).catch(function () {});
      });
    setTimeout(pollStatus, 5000);
  }

  // The backfill estimate (GET /retrieve/estimate), refreshed every 30 s while the research page is open.
  function pollEstimate() {
    window.nmdoseFetch(root + "retrieve/estimate", {credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.json() : Promise.reject(r.status);
    }).then(function (d) {
      var el = document.getElementById("retrieve-estimate");
      if (!el) return;
      if (!d.pending_studies) { el.textContent = t("est.none"); }
      else if (d.retrieval_seconds === null) { el.textContent = d.pending_studies + " " + t("est.pending") + " · " + (d.why_unknown || ""); }
      else {
        var h = d.retrieval_seconds / 3600;
        el.textContent = d.pending_studies + " " + t("est.pending") + " · " + t("est.time") + " " +
          (h >= 1 ? h.toFixed(1) + " h" : Math.round(d.retrieval_seconds / 60) + " min") + " · " + t("est.ends") + " " +
          (d.ends_at ? String(d.ends_at).slice(0, 16).replace("T", " ") : t("est.beyond"));
      }
      if (d.failed_studies) el.textContent += " · " + t("est.failed") + " " + d.failed_studies;
    }).catch(function () {});
    setTimeout(pollEstimate, 30000);
  }

  // ----- dose page
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

  // A label of a coded value (`prefix` + value) when both dictionaries have one, else the value as it is.
  function codeLabel(prefix, v) {
    if (v === null || v === undefined || v === "") return "";
    return I18N.en[prefix + v] ? label(prefix + v) : fmt(v);
  }

  // A warning shown as such (red, with a sign), never a plain cell.
  function warning(content) {
    var span = document.createElement("span");
    span.className = "warning";
    span.textContent = "⚠ ";
    span.appendChild(content instanceof Node ? content : document.createTextNode(content));
    return span;
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

  // A value with a tooltip (the explanation stays one hover away).
  function withTitle(text, title) {
    var span = document.createElement("span");
    span.textContent = text;
    if (title) span.title = title;
    return span;
  }

  function studyLink(uid) { return link(root + "ui/study/" + encodeURIComponent(uid), uid); }

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
        if (charts[el.id]) { charts[el.id].destroy(); delete charts[el.id]; }
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

  // ----- study page
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

  document.getElementById("lang-toggle").addEventListener("click", function () {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("nmdose.lang", lang);
    applyLang();
  });
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
  applyLang();
  var page = body.getAttribute("data-page");
  if (page === "research") research();
  else if (page === "dose") dose();
  else if (page === "study") study();

  // The other pages' scripts (shell.PAGE_SCRIPTS, loaded after this file) use the same helpers and language:
  // nmdose.register(page, {en: {...}, ko: {...}}, run) adds the page's labels (both languages, the unit test of
  // the dictionaries reads them too) and runs `run` when this is that page.
  window.nmdose = {
    root: root, orthancRoot: orthancRoot, t: t, tv: tv, api: api, fmt: fmt, table: table, link: link,
    label: label, setLabel: setLabel, errorText: errorText, showError: showError, chart: chart,
    boxChart: boxChart, studyLink: studyLink, colors: COLORS,
    lang: function () { return lang; },
    register: function (name, labels, run) {
      ["en", "ko"].forEach(function (l) { Object.assign(I18N[l], (labels || {})[l] || {}); });
      if (name === page) { applyLang(); if (run) run(); }
    }
  };
})();
