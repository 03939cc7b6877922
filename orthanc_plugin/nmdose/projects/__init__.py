"""Research projects (issue 17 item 2, docs/projects.md): named sets of research PACS studies with their members.

- :mod:`names`: the project name rule, the CSV of accession numbers or UIDs, :class:`ProjectError`;
- :mod:`access`: who may read or write which project (token roles and groups, explicit members, admins);
- :mod:`store`: the rows of `rpacs.project`, `rpacs.project_study`, `rpacs.project_member` (sql/018_projects.sql);
- :mod:`orthanc`: the research PACS's REST API for a study's ZIP and for storing uploaded files;
- :mod:`upload`: the files of an upload (DICOM files or a ZIP of them), each checked, the good ones stored;
- :mod:`cli`: `nmdose project create|add|list|members|remove`.
"""
