// Fanout's pages: confirmations for cancel and retry, and a job page that keeps itself
// current. No framework, no build step; inlined in every page under its nonce.
(function () {
  "use strict";

  // A form with data-confirm is a GET to a confirmation page (which works without this
  // script). With it: ask here, then POST the confirmed action with the page's token.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    event.preventDefault();
    if (!window.confirm(question)) return;
    var post = document.createElement("form");
    post.method = "post";
    post.action = form.action;
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = form.getAttribute("data-token") || "";
    post.appendChild(token);
    document.body.appendChild(post);
    post.submit();
  });

  // While the job runs, fetch the live region again every 2 s and swap it in place: the
  // rest of the page, the scroll position and the history stay as they are.
  var PERIOD = 2000;
  var MAX_PERIOD = 30000;
  var delay = PERIOD;

  function live() { return document.getElementById("live"); }

  function busy(region) {
    // Do not swap a control out from under the person using it.
    var active = document.activeElement;
    return active && region.contains(active) && /^(SELECT|INPUT|TEXTAREA)$/.test(active.tagName);
  }

  function schedule() { window.setTimeout(refresh, delay); }

  function refresh() {
    var region = live();
    if (!region) return;
    if (document.hidden || busy(region)) { schedule(); return; }
    fetch(region.getAttribute("data-live-url"), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      var holder = document.createElement("template");
      holder.innerHTML = html;
      var fresh = holder.content.getElementById("live");
      if (!fresh) throw new Error("no live region in the answer");
      var current = live();
      if (busy(current)) { schedule(); return; }
      current.replaceWith(fresh);
      delay = PERIOD;
      if (fresh.getAttribute("data-terminal") !== "true") schedule();
    }).catch(function () {
      delay = Math.min(delay * 2, MAX_PERIOD); // the API restarting: back off, keep trying
      schedule();
    });
  }

  var region = live();
  if (region && region.getAttribute("data-terminal") === "false") schedule();
})();
