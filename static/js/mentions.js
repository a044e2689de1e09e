// "@" in a comment suggests the plan's members: a listbox under the comment box, filtered as
// the name is typed, chosen with the arrow keys and Enter (or Tab), or with the mouse; Escape
// closes it. The comment box points at the active suggestion with aria-activedescendant, and a
// status line says how many members match. The members come from the box's data-mentions (the
// server's list); without JavaScript the help under the box names them. Comment boxes arrive
// with HTMX, so every listener is on the document.
(function () {
  "use strict";
  var MAX = 8;
  var TOKEN = /(^|[^\w@])@([\w.+-]*)$/;

  function parts(box) {
    var id = box.getAttribute("aria-controls");
    var list = id && document.getElementById(id);
    var status = document.getElementById(box.id + "-status");
    return list ? { list: list, status: status } : null;
  }

  function members(box) {
    if (!box._mentions) {
      try { box._mentions = JSON.parse(box.dataset.mentions || "[]"); }
      catch (e) { box._mentions = []; }
    }
    return box._mentions;
  }

  // The "@name" being typed just before the caret, or null.
  function query(box) {
    if (box.selectionStart !== box.selectionEnd) return null;
    var before = box.value.slice(0, box.selectionStart);
    var match = TOKEN.exec(before);
    return match ? { text: match[2], start: before.length - match[2].length - 1 } : null;
  }

  function matches(box, text) {
    var wanted = text.toLowerCase();
    var starts = [], within = [];
    members(box).forEach(function (m) {
      var user = m.username.toLowerCase(), name = m.name.toLowerCase();
      if (user.indexOf(wanted) === 0 || name.indexOf(wanted) === 0 ||
          name.split(/\s+/).some(function (w) { return w.indexOf(wanted) === 0; })) starts.push(m);
      else if (user.indexOf(wanted) > 0 || name.indexOf(wanted) > 0) within.push(m);
    });
    return starts.concat(within).slice(0, MAX);
  }

  function close(box) {
    var p = parts(box);
    if (!p) return;
    p.list.hidden = true;
    p.list.textContent = "";
    box.removeAttribute("aria-activedescendant");
    box._token = null;
  }

  function activate(box, index) {
    var p = parts(box);
    var options = p.list.querySelectorAll("[role=option]");
    if (!options.length) return;
    index = (index + options.length) % options.length;
    options.forEach(function (o, i) { o.setAttribute("aria-selected", i === index ? "true" : "false"); });
    box.setAttribute("aria-activedescendant", options[index].id);
    options[index].scrollIntoView({ block: "nearest" });
    box._active = index;
  }

  function open(box) {
    var p = parts(box);
    if (!p) return;
    var token = query(box);
    if (!token) { close(box); return; }
    var found = matches(box, token.text);
    p.list.textContent = "";
    found.forEach(function (m, i) {
      var option = document.createElement("li");
      option.id = p.list.id + "-" + i;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.dataset.username = m.username;
      var name = document.createElement("span");
      name.className = "mention-name";
      name.textContent = m.name;
      var handle = document.createElement("span");
      handle.className = "mention-handle";
      handle.textContent = "@" + m.username + " · " + m.role;
      option.appendChild(name);
      option.appendChild(document.createTextNode(" "));
      option.appendChild(handle);
      p.list.appendChild(option);
    });
    box._token = token;
    if (!found.length) {
      close(box);
      if (p.status) p.status.textContent = "No member matches “" + token.text + "”.";
      return;
    }
    p.list.hidden = false;
    activate(box, 0);
    if (p.status) {
      p.status.textContent = found.length + (found.length === 1 ? " member matches" : " members match") +
        ": up and down arrows to choose, Enter to mention.";
    }
  }

  function choose(box, option) {
    var token = box._token || query(box);
    if (!token || !option) return;
    var insert = "@" + option.dataset.username + " ";
    var end = token.start + 1 + token.text.length;
    var after = box.value.slice(end).replace(/^\s/, "");
    box.value = box.value.slice(0, token.start) + insert + after;
    var caret = token.start + insert.length;
    box.setSelectionRange(caret, caret);
    close(box);
    var p = parts(box);
    if (p && p.status) p.status.textContent = option.querySelector(".mention-name").textContent + " mentioned.";
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }

  function isBox(el) {
    return el && el.tagName === "TEXTAREA" && el.hasAttribute("data-mentions");
  }

  document.addEventListener("input", function (e) {
    if (isBox(e.target) && !e.target._choosing) open(e.target);
  });
  document.addEventListener("click", function (e) {
    if (isBox(e.target)) open(e.target);
  });
  document.addEventListener("keydown", function (e) {
    var box = e.target;
    // Open while its list shows (a textbox may not carry aria-expanded: that is a combobox's,
    // and ARIA in HTML allows no role on a textarea).
    var p = isBox(box) && parts(box);
    if (!p || p.list.hidden) return;
    var options = p.list.querySelectorAll("[role=option]");
    if (e.key === "ArrowDown") { e.preventDefault(); activate(box, (box._active || 0) + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); activate(box, (box._active || 0) - 1); }
    else if (e.key === "Enter" || e.key === "Tab") {
      if (e.shiftKey || e.ctrlKey || e.metaKey || e.altKey) return;
      e.preventDefault();
      e.stopPropagation();
      box._choosing = true;
      choose(box, options[box._active || 0]);
      box._choosing = false;
    }
    else if (e.key === "Escape") {
      // Closes the suggestions only, not the comment box around them (static/js/live.js).
      e.preventDefault();
      e.stopPropagation();
      close(box);
    }
  }, true);  // capturing: before the board's own keys
  document.addEventListener("keyup", function (e) {
    // The caret moved without typing (arrows left/right, Home, End): follow it.
    if (isBox(e.target) && ["ArrowLeft", "ArrowRight", "Home", "End"].indexOf(e.key) >= 0) open(e.target);
  });
  // A mouse press on a suggestion chooses it; the comment box keeps the focus.
  document.addEventListener("mousedown", function (e) {
    var option = e.target.closest && e.target.closest(".mention-list [role=option]");
    if (!option) return;
    e.preventDefault();
    var box = document.querySelector('[aria-controls="' + option.parentNode.id + '"]');
    if (isBox(box)) {
      box._choosing = true;
      choose(box, option);
      box._choosing = false;
    }
  });
  document.addEventListener("focusout", function (e) {
    if (isBox(e.target)) close(e.target);
  });
})();
