// The workshop room: it follows the facilitator. The plan's event stream says "the room moved
// on" (a `room` event with the session's revision); this page then re-fetches its own view of
// the room (private items and votes are drawn per person by the server). Also: the shared
// timer counted down to the moment the server set, what screen readers hear, present mode,
// and placing assumptions on the map by dragging or with the arrow keys.
(function () {
  "use strict";
  var announcer = document.getElementById("room-announcer");
  var offset = 0; // the server's clock minus this browser's
  var source = null;
  var connection = null;
  var last = null; // what the timer and step were at the last draw, to say what changed
  var warned = {};
  var csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];

  function room() { return document.getElementById("room"); }

  function say(text) {
    if (!announcer || !text) return;
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // --- following the room ------------------------------------------------------------------------

  // Every response is drawn into #room-frame, which stays: a response never lands on a room that
  // another one replaced meanwhile. What is drawn only goes forward: a re-fetch that comes back
  // with an older revision than the one on the screen (the person's own action was quicker) is
  // dropped, and one that brings the same revision after an action of theirs too (their votes and
  // items are newer in the action's answer).
  var refreshing = false;
  var again = false;
  var heard = 0; // the newest revision the stream told of
  var actions = 0; // room actions this page sent
  var acting = 0; // of which on their way: their answer brings the room as it is then
  var actionsAtRefresh = 0;

  function drawn() {
    var el = room();
    return el ? parseInt(el.dataset.revision, 10) : 0;
  }

  function refresh() {
    var el = room();
    if (!el) return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    actionsAtRefresh = actions;
    htmx.ajax("GET", el.dataset.roomUrl, {source: "#room-frame", target: "#room-frame", swap: "innerHTML"})
      .finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function inRoom(e) {
    return e.detail.target && e.detail.target.id === "room-frame";
  }

  document.body.addEventListener("htmx:beforeRequest", function (e) {
    if (inRoom(e) && e.detail.requestConfig.verb !== "get") { actions += 1; acting += 1; }
  });
  document.body.addEventListener("htmx:afterRequest", function (e) {
    if (!inRoom(e) || e.detail.requestConfig.verb === "get") return;
    acting = Math.max(0, acting - 1);
    if (!acting && heard > drawn()) refresh(); // no answer drawn, or an older one
  });
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (!inRoom(e) || e.detail.requestConfig.verb !== "get") return;
    var found = /data-revision="(\d+)"/.exec(e.detail.serverResponse || "");
    var theirs = found ? parseInt(found[1], 10) : 0;
    if (theirs < drawn() || (theirs === drawn() && actions !== actionsAtRefresh)) e.detail.shouldSwap = false;
  });

  function connect() {
    var el = room();
    if (!el || source) return;
    source = new EventSource(el.dataset.eventsUrl);
    source.addEventListener("hello", function (e) {
      connection = JSON.parse(e.data).connection;
      var body = new URLSearchParams({connection: connection, editing: "room"});
      fetch(el.dataset.eventsUrl.replace(/events\/.*$/, "presence/"), {
        method: "POST", body: body, credentials: "same-origin", headers: {"X-CSRFToken": csrf},
      }).catch(function () {});
    });
    source.addEventListener("room", function (e) {
      var data = JSON.parse(e.data);
      var current = room();
      if (!current) return;
      var ours = parseInt(current.dataset.session, 10);
      if (data.session === ours) {
        heard = Math.max(heard, data.revision);
        if (data.revision > drawn() && !acting) refresh();
      } else {
        // Our session ended (or another one runs): draw ours as it is now.
        if (current.classList.contains("room-running")) refresh();
        showBackToRoom(data);
      }
    });
    source.addEventListener("presence", function (e) { showPeople(JSON.parse(e.data)); });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, 2000);
      }
    };
  }

  function showBackToRoom(data) {
    var banner = document.querySelector("[data-back-to-room]");
    if (!banner) return;
    banner.hidden = !data.session;
    if (data.session) banner.querySelector("[data-room-link]").href = data.url;
  }

  function showPeople(people) {
    var el = document.querySelector("[data-room-people]");
    if (!el) return;
    var here = people.filter(function (p) { return p.editing.indexOf("room") !== -1; });
    var names = here.map(function (p) { return p.name + (p.role ? " (" + p.role + ")" : ""); });
    el.textContent = names.length ? "In the room: " + names.join(", ") : "";
  }

  // --- the timer -----------------------------------------------------------------------------------

  function timerState() {
    var el = document.querySelector("[data-timer]");
    if (!el) return null;
    return {
      el: el,
      state: el.dataset.state,
      seconds: parseInt(el.dataset.seconds, 10),
      endsAt: el.dataset.endsAt ? parseInt(el.dataset.endsAt, 10) : null,
    };
  }

  function secondsLeft(t) {
    if (t.endsAt === null) return t.seconds;
    return Math.max(0, Math.ceil((t.endsAt - (Date.now() + offset)) / 1000));
  }

  function clock(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function words(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    var parts = [];
    if (m) parts.push(m + (m === 1 ? " minute" : " minutes"));
    if (s || !m) parts.push(s + (s === 1 ? " second" : " seconds"));
    return parts.join(" ");
  }

  function tick() {
    var t = timerState();
    if (!t) return;
    var left = secondsLeft(t);
    var display = t.el.querySelector("[data-timer-display]");
    if (display.textContent !== clock(left)) display.textContent = clock(left);
    if (t.state !== "running") return;
    var key = t.endsAt;
    if (left <= 60 && left > 50 && !warned[key + ":60"]) {
      warned[key + ":60"] = true;
      say("One minute left.");
    }
    if (left === 0 && !warned[key + ":0"]) {
      warned[key + ":0"] = true;
      t.el.classList.add("timer-done");
      say("Time is up.");
      chime();
    }
  }

  // A gentle signal: one soft tone, where the browser lets a page play sound.
  function chime() {
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return;
      var audio = new Context();
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 660;
      gain.gain.setValueAtTime(0.0001, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.08, audio.currentTime + 0.05);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 1.2);
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 1.3);
    } catch (error) { /* no sound: the display and the announcement remain */ }
  }

  // What changed since the last draw, in words, for screen readers (not every second).
  function announceChanges() {
    var el = room();
    if (!el) return;
    offset = parseInt(el.dataset.serverNow, 10) - Date.now();
    var t = timerState();
    var now = {
      step: el.dataset.step,
      title: (el.querySelector(".step-title") || {}).textContent || "",
      state: t ? t.state : "",
      left: t ? secondsLeft(t) : 0,
      endsAt: t ? t.endsAt : null,
    };
    if (last) {
      if (now.step !== last.step && now.title) say("The room moved to: " + now.title + ".");
      else if (now.state === "running" && last.state !== "running") say("Timer started: " + words(now.left) + ".");
      else if (now.state === "paused" && last.state === "running") say("Timer paused at " + words(now.left) + ".");
      else if (now.state !== "idle" && now.left > last.left + 30 && now.state === last.state) say("A minute added: " + words(now.left) + " left.");
      else if (now.state === "idle" && last.state !== "idle" && now.step === last.step) say("Timer ended.");
    }
    last = now;
  }

  // --- present mode: one key in, the same key (or Escape) out ----------------------------------------

  function present(on) {
    document.body.classList.toggle("presenting", on);
    try { sessionStorage.setItem("outside-in-present", on ? "1" : ""); } catch (e) { /* private mode */ }
    document.querySelectorAll("[data-present]").forEach(function (b) { b.setAttribute("aria-pressed", on ? "true" : "false"); });
  }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
    if (e.key === "p" || e.key === "P") { present(!document.body.classList.contains("presenting")); e.preventDefault(); }
    else if (e.key === "Escape" && document.body.classList.contains("presenting")) present(false);
  });
  document.addEventListener("click", function (e) {
    if (e.target.closest("[data-present]")) present(!document.body.classList.contains("presenting"));
  });

  // --- the map: drag, or arrow keys on a focused assumption ----------------------------------------

  // One place in flight at a time, the newest asked for each assumption next: arrow keys pressed
  // faster than the room is re-drawn add up, and none is lost.
  var placing = false;
  var wanted = {}; // assumption → [importance, evidence], not sent yet
  var asked = {}; // assumption → [importance, evidence], the latest asked for while placing

  function placeOf(chip) {
    return asked[chip.dataset.assumption] ||
      [parseInt(chip.dataset.importance, 10), parseInt(chip.dataset.evidence, 10)];
  }

  function place(chip, importance, evidence) {
    if (importance < 1 || importance > 5 || evidence < 1 || evidence > 5) return;
    asked[chip.dataset.assumption] = wanted[chip.dataset.assumption] = [importance, evidence];
    if (!placing) sendPlace();
  }

  function sendPlace() {
    var form = document.querySelector("[data-place-form]");
    var id = Object.keys(wanted)[0];
    if (!form || id === undefined) { placing = false; asked = {}; wanted = {}; return; }
    var values = {assumption: id, importance: wanted[id][0], evidence: wanted[id][1]};
    delete wanted[id];
    placing = true;
    htmx.ajax("POST", form.getAttribute("action"), {source: form, target: "#room-frame", swap: "innerHTML", values: values})
      .finally(sendPlace);
  }

  document.addEventListener("dragstart", function (e) {
    var chip = e.target.closest && e.target.closest("[data-place]");
    if (chip) e.dataTransfer.setData("text/plain", chip.id);
  });
  document.addEventListener("dragover", function (e) {
    if (e.target.closest && e.target.closest(".map-cell")) e.preventDefault();
  });
  document.addEventListener("drop", function (e) {
    var cell = e.target.closest && e.target.closest(".map-cell");
    if (!cell) return;
    e.preventDefault();
    var chip = document.getElementById(e.dataTransfer.getData("text/plain"));
    if (chip) place(chip, parseInt(cell.dataset.importance, 10), parseInt(cell.dataset.evidence, 10));
  });
  document.addEventListener("keydown", function (e) {
    var chip = e.target.closest && e.target.closest("[data-place]");
    if (!chip) return;
    var moves = {ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowRight: [0, 1], ArrowLeft: [0, -1]};
    var move = moves[e.key];
    if (!move) return;
    e.preventDefault();
    var from = placeOf(chip);
    place(chip, from[0] + move[0], from[1] + move[1]);
  });

  // --- keeping focus and forms across re-draws ------------------------------------------------------

  var focused = null;
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (inRoom(e) && e.detail.shouldSwap) {
      var active = document.activeElement;
      focused = active && active.id && room().contains(active) ? active.id : null;
    }
  });
  document.body.addEventListener("htmx:afterSettle", function (e) {
    if (!room() || !inRoom(e)) return;
    if (heard > drawn()) refresh(); // an older room was drawn (an action's answer overtaken)
    announceChanges();
    var notice = room().querySelector("[data-notice], .message-error");
    if (notice) say(notice.textContent);
    if (focused) {
      var again = document.getElementById(focused);
      if (again) again.focus();
      else {
        var heading = document.getElementById("step-heading");
        if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
      }
    }
    focused = null;
    tick();
  });
  document.body.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (form && form.matches && form.matches("form[data-reset-after], #add-step-form") && e.detail.successful) {
      form.reset();
      var first = form.querySelector("input:not([type=hidden]), select, textarea");
      if (first) first.focus();
    }
  });

  try { if (sessionStorage.getItem("outside-in-present")) present(true); } catch (e) { /* private mode */ }
  announceChanges();
  connect();
  setInterval(tick, 250);
  tick();
})();
