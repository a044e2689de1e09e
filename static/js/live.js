// The live board: server-sent events say "the plan changed"; the board re-fetches itself
// through the normal view and swaps in the new state around any form a member has open, so
// nobody loses what they are typing. Also: presence, and keyboard use of the edit forms.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-root]");
  if (!root) return;
  var version = parseInt(root.dataset.version, 10);
  var connection = null;
  var people = [];
  var status = document.getElementById("live-status");
  var csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
  var source = null;
  var refreshing = null;
  var again = false;

  function setStatus(text) {
    if (!status) return;
    status.textContent = text;
    status.hidden = !text;
  }

  function connect() {
    source = new EventSource(root.dataset.eventsUrl + "?v=" + version);
    source.addEventListener("hello", function (e) {
      connection = JSON.parse(e.data).connection;
      setStatus("");
      sendEditing();
    });
    source.addEventListener("changed", function (e) {
      var data = JSON.parse(e.data);
      if (data.version === version) return;
      version = data.version;
      var parts = itemParts(data.items);
      if (parts) refreshItems(parts);
      else refresh();
    });
    source.addEventListener("presence", function (e) {
      people = JSON.parse(e.data);
      showPresence();
    });
    // A workshop session started or ended: one click back to the room (the server's URL).
    source.addEventListener("room", function (e) {
      var data = JSON.parse(e.data);
      var banner = document.querySelector("[data-back-to-room]");
      if (!banner) return;
      banner.hidden = !data.session;
      if (data.session) banner.querySelector("[data-room-link]").href = data.url;
    });
    source.addEventListener("gone", function () {
      setStatus("This plan no longer exists.");
      source.close();
    });
    source.onerror = function () {
      setStatus("Connection lost, reconnecting…");
      if (source.readyState === EventSource.CLOSED) retry(); // the browser gave up; we do not
    };
  }

  // An EventSource cannot read why it was refused: ask once with fetch. A full server (429)
  // says why and when to come back; anything else is tried again shortly.
  function retry() {
    var probe = new AbortController();
    fetch(root.dataset.eventsUrl + "?v=" + version, {signal: probe.signal, credentials: "same-origin"})
      .then(function (response) {
        if (response.status !== 429) {
          probe.abort();
          setTimeout(connect, 2000);
          return;
        }
        var wait = parseInt(response.headers.get("Retry-After") || "30", 10);
        return response.text().then(function (text) {
          setStatus(text);
          setTimeout(connect, wait * 1000);
        });
      })
      .catch(function () { setTimeout(connect, 2000); });
  }

  // --- refreshing the board without losing open forms ------------------------------------------

  function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = fragment(root.dataset.boardUrl)
      .then(function (html) {
        // A click on its way (Edit, Save…) targets the board as it is: let it land and settle,
        // then refresh.
        if (root.querySelector(".htmx-request, .htmx-settling")) again = true;
        else reconcile(html);
      })
      .catch(function () { setStatus("Could not refresh the board; retrying…"); again = true; })
      .finally(function () {
        refreshing = null;
        if (again) {
          again = false;
          setTimeout(refresh, 200);
        }
      });
  }

  // --- refreshing single items: an edit of one card costs one card, not the whole board -----------

  // What to re-fetch is the server's to say: per changed item, the cards (`key`) and the URL
  // that draws one, or "board" when the edit moved it (planning/live_events.py).
  function itemParts(items) {
    if (!items || !items.length || root.dataset.filtered) return null;
    var parts = [];
    for (var i = 0; i < items.length; i++) {
      var item = items[i];
      if (item.refresh !== "item") return null;
      var selector = '[data-item="' + CSS.escape(item.key) + '"]';
      var nodes = root.querySelectorAll(selector + ":not([data-editing])");
      if (!nodes.length && !root.querySelector(selector)) return null;
      Array.prototype.forEach.call(nodes, function (node) {
        // A card drawn in several columns says which (`data-column`): it comes back for that one.
        var column = node.dataset.column;
        parts.push({node: node, url: item.url + (column ? "?in=" + encodeURIComponent(column) : "")});
      });
    }
    return parts;
  }

  // A fragment, asked for the way htmx asks (its headers, the page's CSRF header), without
  // swapping anything: the caller puts it in place around open forms. A hidden element of its
  // own is each request's source, so that requests neither queue behind one another nor mark
  // the board as busy.
  function fragment(url) {
    var source = document.createElement("span");
    source.hidden = true;
    document.body.appendChild(source);
    return new Promise(function (resolve, reject) {
      htmx.ajax("GET", url, {
        source: source,
        target: source,
        swap: "none",
        handler: function (elt, info) {
          var status = info.xhr.status;
          if (status >= 200 && status < 300) resolve(info.xhr.responseText);
          else reject(new Error(status));
        },
      }).catch(reject);
    }).finally(function () { source.remove(); });
  }

  function refreshItems(parts) {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = Promise.all(parts.map(function (part) { return fragment(part.url); }))
      .then(function (htmls) {
        if (root.querySelector(".htmx-request, .htmx-settling")) {
          again = true;
          return;
        }
        parts.forEach(function (part, i) { if (document.contains(part.node)) swapNode(part.node, htmls[i]); });
        showPresence();
        setStatus("");
      })
      .catch(function () { again = true; })
      .finally(function () {
        refreshing = null;
        if (again) {
          again = false;
          setTimeout(refresh, 200);
        }
      });
  }

  function swapNode(node, html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var fresh = template.content.firstElementChild;
    if (!fresh) return;
    var active = document.activeElement;
    var focused = active && node.contains(active) ? focusPath(active) : null;
    var open = Array.prototype.map.call(node.querySelectorAll("[data-editing]"), function (el) {
      return {el: el, key: el.dataset.key, slot: el.parentElement ? el.parentElement.id : ""};
    });
    open.forEach(function (o) { o.el.remove(); });
    node.replaceWith(fresh);
    open.forEach(function (o) {
      var target = o.key && fresh.querySelector('[data-key="' + CSS.escape(o.key) + '"]');
      var slot = o.slot && fresh.querySelector("#" + CSS.escape(o.slot));
      if (target) target.replaceWith(o.el);
      else if (slot) slot.appendChild(o.el);
      else fresh.prepend(o.el);
    });
    htmx.process(fresh);
    if (active && document.contains(active)) active.focus({preventScroll: true});
    else if (focused) refocus(focused);
  }

  function reconcile(html) {
    var active = document.activeElement;
    var selection = null;
    if (active && root.contains(active) && typeof active.selectionStart === "number") {
      selection = [active.selectionStart, active.selectionEnd];
    }
    var focused = active && root.contains(active) ? focusPath(active) : null;
    var open = Array.prototype.map.call(root.querySelectorAll("[data-editing]"), function (el) {
      return {el: el, key: el.dataset.key, slot: el.parentElement ? el.parentElement.id : ""};
    });
    open.forEach(function (o) { o.el.remove(); });
    root.innerHTML = html;
    open.forEach(function (o) {
      var target = o.key && root.querySelector('[data-key="' + CSS.escape(o.key) + '"]');
      var slot = o.slot && document.getElementById(o.slot);
      if (target) {
        target.replaceWith(o.el);
      } else if (slot) {
        slot.appendChild(o.el);
      } else {
        o.el.classList.add("orphan");
        if (!o.el.querySelector(".orphan-note")) {
          var note = document.createElement("p");
          note.className = "orphan-note";
          note.setAttribute("role", "alert");
          note.textContent = "Someone deleted this while you were editing it. Save to keep your version, or cancel.";
          o.el.prepend(note);
        }
        root.prepend(o.el);
      }
    });
    htmx.process(root);
    if (active && document.contains(active)) {
      active.focus();
      if (selection) active.setSelectionRange(selection[0], selection[1]);
    } else if (focused) {
      refocus(focused);
    }
    showPresence();
    setStatus("");
  }

  // A keyboard user's place on the board survives a refresh: the same button of the same item.
  var FOCUSABLE = "a[href], button, input, select, textarea";

  function focusPath(el) {
    var keyed = el.closest("[data-key]");
    if (!keyed || el.closest("[data-editing]")) return null; // open forms are kept as they are
    var all = keyed.querySelectorAll(FOCUSABLE);
    return {key: keyed.dataset.key, html: el.outerHTML, index: Array.prototype.indexOf.call(all, el)};
  }

  function refocus(path) {
    var keyed = root.querySelector('[data-key="' + CSS.escape(path.key) + '"]');
    if (!keyed) return;
    var all = Array.prototype.slice.call(keyed.querySelectorAll(FOCUSABLE));
    var same = all.filter(function (el) { return el.outerHTML === path.html; })[0] || all[path.index];
    if (same) same.focus({preventScroll: true});
  }

  // --- presence: who is here, who edits what -----------------------------------------------------

  function showPresence() {
    var list = document.getElementById("presence");
    if (list) {
      list.innerHTML = "";
      people.forEach(function (p) {
        var chip = document.createElement("span");
        chip.className = "person";
        chip.textContent = p.name + (p.role ? " (" + p.role + ")" : "");
        chip.title = p.editing.length ? "editing" : "viewing";
        list.appendChild(chip);
      });
      list.setAttribute("aria-label", people.length === 1
        ? "1 person has this plan open"
        : people.length + " people have this plan open");
    }
    root.querySelectorAll(".editing-by").forEach(function (el) { el.remove(); });
    var me = String(list ? list.dataset.me : "");
    people.forEach(function (p) {
      if (String(p.id) === me) return;
      p.editing.forEach(function (item) {
        root.querySelectorAll('[data-item="' + CSS.escape(item) + '"]').forEach(function (el) {
          if (el.hasAttribute("data-editing")) return;
          var badge = document.createElement("p");
          badge.className = "editing-by";
          badge.textContent = p.name + (p.role ? " (" + p.role + ")" : "") + " is editing";
          el.prepend(badge);
        });
      });
    });
  }

  function sendEditing() {
    if (!connection) return;
    var forms = root.querySelectorAll("[data-editing]");
    var editing = forms.length ? (forms[0].dataset.item || "new-" + forms[0].dataset.new) : "";
    var body = new URLSearchParams({connection: connection, editing: editing});
    fetch(root.dataset.presenceUrl, {
      method: "POST", body: body, credentials: "same-origin", headers: {"X-CSRFToken": csrf},
    }).catch(function () {}); // best effort: the next connection's hello sends it again
  }

  // --- keyboard: focus lands in the form, Escape cancels, Enter saves ------------------------------

  // A form that closes (saved or cancelled) hands focus back to its item's first tool (Edit),
  // not to the top of the page.
  var closing = false;
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail.target;
    closing = !!(target && target.matches && target.matches("[data-editing]") &&
                 target.contains(document.activeElement));
  });

  document.body.addEventListener("htmx:afterSwap", function () { sendEditing(); });

  // Focus moves once the swap has settled, when htmx has made the new buttons and links work (a
  // keyboard user may press Enter or Escape at once).
  document.body.addEventListener("htmx:afterSettle", function (e) {
    var form = e.target.querySelector ? e.target.querySelector("[data-editing] form") : null;
    if (!form && e.target.matches && e.target.matches("[data-editing]")) form = e.target.querySelector("form");
    if (form) {
      var first = form.querySelector("input:not([type=hidden]), textarea, select");
      if (first) first.focus();
    } else if (closing && e.target.querySelector) {
      var tool = e.target.querySelector(".tools button, [data-tools] button");
      if (tool) tool.focus();
    }
    closing = false;
  });

  root.addEventListener("keydown", function (e) {
    var article = e.target.closest && e.target.closest("[data-editing]");
    if (!article) return;
    if (e.key === "Escape") {
      e.preventDefault();
      cancel(article);
    } else if (e.key === "Enter" && e.target.tagName === "TEXTAREA" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      article.querySelector("form").requestSubmit();
    }
  });

  root.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-cancel][data-remove]");
    if (!button) return;
    e.preventDefault();
    cancel(button.closest("[data-editing]"));
  });

  function cancel(article) {
    var button = article.querySelector("[data-cancel]");
    if (button && button.hasAttribute("data-remove")) {
      // Back to the "Add …" button that opened this form, just after its slot.
      var opener = article.parentElement && article.parentElement.nextElementSibling;
      article.remove();
      opener = opener && opener.querySelector("button");
      if (opener) opener.focus();
      sendEditing();
    } else if (button) {
      htmx.trigger(button, "click");
    }
  }

  // Filters apply as soon as they change.
  document.querySelectorAll(".filters select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.requestSubmit(); });
  });

  window.addEventListener("beforeunload", function () { if (source) source.close(); });
  connect();
})();
