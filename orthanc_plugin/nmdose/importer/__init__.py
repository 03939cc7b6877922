"""The watch-folder importer (docs/import.md): outside studies dropped as one folder per patient, checked,
their patient set from the folder name in staged copies, C-STOREd into the research PACS, confirmed
there by SOPInstanceUID, then the folder moved to archive/ (or failed/ with a report). A CLI service: the Orthanc
plugin never imports it.

- :mod:`nmdose.importer.dicomfiles`: is it DICOM, its UIDs, the patient rewrite;
- :mod:`nmdose.importer.folder`: one folder: scan, classify, stage the rewritten copies, storescu, confirm,
  archive;
- :mod:`nmdose.importer.store`: the rpacs.import_run rows;
- :mod:`nmdose.importer.watch`: inotify on the drop folder, debounce;
- :mod:`nmdose.importer.cli`: `nmdose import folder|watch|list`.
"""
