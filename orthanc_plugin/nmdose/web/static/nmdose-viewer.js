// The OHIF viewer's boot script (served as /nmdose/viewer/nmdose-viewer.js; docs/viewer.md). OHIF's own index.html
// sets these in inline scripts, which the viewer's Content-Security-Policy does not run:
// - window.PUBLIC_URL: the folder of this script (…/nmdose/viewer/), whatever prefix a reverse proxy adds; the
//   bundles' webpack public path reads it (web/viewer_dist.py patched them at install time);
// - window.browserImportFunction: OHIF's dynamic import helper.
// In keycloak mode the pages' login script (nmdose-auth.js, loaded before this one) logs in first; then the access
// token goes into the nmdose_session cookie (POST /nmdose/session), which authenticates the viewer's DICOMweb
// requests (/dicom-web/, gated by the plugin's HTTP filter) and is renewed with each refreshed token (the cookie
// never lapses while the page is open). Only then are app-config.js and the application bundle loaded, in order
// (`data-scripts`).
(function () {
  "use strict";
  const me = document.currentScript;
  const here = new URL("./", me.src);
  window.PUBLIC_URL = here.pathname;
  window.browserImportFunction = function (name) {
    return import(name);
  };
  const scripts = JSON.parse(me.getAttribute("data-scripts") || "[]");
  const sessionUrl = new URL("../session", here).toString();

  function load(src) {
    return new Promise(function (resolve, reject) {
      const s = document.createElement("script");
      s.src = new URL(src, here).toString();
      s.async = false;
      s.onload = resolve;
      s.onerror = function () {
        reject(new Error("could not load " + src));
      };
      document.head.appendChild(s);
    });
  }
  async function renewSession() {
    const resp = await window.nmdoseFetch(sessionUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
      credentials: "same-origin",
    });
    if (!resp.ok) {
      throw new Error("session: " + resp.status);
    }
  }
  function fail(error) {
    document.title = "nmdose viewer: " + error.message;
    const p = document.createElement("p");
    p.id = "nmdose-viewer-error";
    p.textContent = "The viewer could not start: " + error.message;
    document.body.appendChild(p);
  }
  async function start() {
    const tokens = await (window.nmdoseAuthReady || Promise.resolve(null));
    if (tokens) {
      await renewSession();
      // Near the token's expiry, nmdoseFetch refreshes it (20 s before) and the new one goes into the cookie: a
      // check every 5 s, a POST only in the last 30 s of a token (each POST is an audited call).
      const meta = document.querySelector('meta[name="nmdose-oidc"]');
      const key = "nmdose.oidc." + JSON.parse(meta.getAttribute("content")).client_id + ".tokens";
      setInterval(function () {
        let expires = 0;
        try {
          expires = JSON.parse(window.sessionStorage.getItem(key) || "null").expires_at || 0;
        } catch (e) {
          expires = 0;
        }
        if (expires - Date.now() < 30000) {
          renewSession().catch(function () {});
        }
      }, 5000);
    }
    for (const src of scripts) {
      await load(src);
    }
  }
  start().catch(function (error) {
    if (document.body) {
      fail(error);
    } else {
      document.addEventListener("DOMContentLoaded", function () {
        fail(error);
      });
    }
  });
})();
