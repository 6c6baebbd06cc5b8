// The overview's live figures (issue 23): htmx polls /console/live into #live. When a refresh
// fails, say so (with the time) and mark the figures stale instead of leaving them looking
// current; the next refresh that succeeds clears the notice.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function isLive(event) { return event.detail && event.detail.elt && event.detail.elt.id === "live"; }
  function failed(event) {
    if (!isLive(event)) { return; }
    var note = document.getElementById("refresh-note");
    var live = document.getElementById("live");
    note.textContent = "Refresh failed at " + clock(new Date()) + "; figures may be stale.";
    note.hidden = false;
    live.classList.add("stale");
  }
  function succeeded(event) {
    if (!isLive(event)) { return; }
    document.getElementById("refresh-note").hidden = true;
    document.getElementById("live").classList.remove("stale");
  }
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);
  document.addEventListener("htmx:timeout", failed);
  document.addEventListener("htmx:afterSwap", succeeded);
})();
