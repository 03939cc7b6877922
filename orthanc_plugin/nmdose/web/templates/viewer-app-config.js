// OHIF's configuration for nmdose (served as /nmdose/viewer/app-config.js; docs/viewer.md). Every address is
// derived from this script's own: the viewer lives at …/nmdose/viewer/, the research PACS's DICOMweb at
// …/dicom-web (two folders up), so a reverse-proxy prefix in front of both keeps working.
(function () {
  "use strict";
  const here = new URL("./", document.currentScript.src);
  const dicomweb = new URL("../../dicom-web", here).toString();
  window.config = {
    name: "nmdose",
    routerBasename: here.pathname,
    extensions: [],
    modes: [],
    // no guided tour over the first image (OHIF's "ohif.tours" customization emptied)
    customizationService: { "ohif.tours": { $set: [] } },
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: "never" },
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
    defaultDataSourceName: "orthanc",
    dataSources: [
      {
        namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
        sourceName: "orthanc",
        configuration: {
          friendlyName: "nmdose research PACS",
          name: "orthanc",
          wadoUriRoot: dicomweb,
          qidoRoot: dicomweb,
          wadoRoot: dicomweb,
          qidoSupportsIncludeField: false,
          supportsReject: false,
          dicomUploadEnabled: false,
          imageRendering: "wadors",
          thumbnailRendering: "wadors",
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: true, relativeResolution: "studies" },
          // the nmdose_session cookie (keycloak mode) goes with every same-origin request
          requestOptions: { withCredentials: true },
        },
      },
    ],
  };
})();
