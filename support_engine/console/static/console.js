// The console's live view, in plain JavaScript: every few seconds the page is fetched again from the
// engine and each of its live sections ([data-live][id]) is swapped in; SLA countdowns (.due[data-due-s])
// tick every second. The pages are complete without it.
(function () {
  "use strict";

  const body = document.body;
  const refreshMs = 1000 * (Number(body.dataset.refreshS) || 5);
  const wall = body.dataset.clock === "wall";
  const speed = Number(body.dataset.speed) || 1;
  const status = document.getElementById("live-status");
  const rendered = new WeakMap(); // live section -> Date.now() when its figures were drawn

  function duration(seconds) {
    let s = Math.floor(Math.abs(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const two = (n) => String(n).padStart(2, "0");
    if (d) return `${d} d ${two(h)} h ${two(m)} min`;
    if (h) return `${h} h ${two(m)} min ${two(s)} s`;
    if (m) return `${m} min ${two(s)} s`;
    return `${s} s`;
  }

  // Engine time now, as a section last drawn it: the wall clock moves on by itself; event time
  // (simulated) moves only with the engine's steps, which the next refresh brings.
  function engineNow(section) {
    const drawn = Number(section.dataset.nowS);
    if (!section.dataset.nowS || Number.isNaN(drawn)) return null;
    if (!wall) return drawn;
    const since = rendered.get(section) || Date.now();
    return drawn + ((Date.now() - since) / 1000) * speed;
  }

  function tick() {
    for (const section of document.querySelectorAll("[data-live][data-now-s]")) {
      const now = engineNow(section);
      if (now === null) continue;
      for (const due of section.querySelectorAll(".due[data-due-s]")) {
        const left = Number(due.dataset.dueS) - now;
        due.textContent = left >= 0 ? `${duration(left)} left` : `overdue ${duration(left)}`;
        due.classList.toggle("late", left < 0);
      }
    }
  }

  function show(text, stale) {
    if (!status) return;
    status.hidden = false;
    status.textContent = text;
    status.classList.toggle("stale", stale);
  }

  async function refresh() {
    if (document.hidden) return;
    let page;
    try {
      const answer = await fetch(window.location.href, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!answer.ok) {
        show(`live: the engine answered ${answer.status}`, true);
        return;
      }
      page = new DOMParser().parseFromString(await answer.text(), "text/html");
    } catch (_) {
      show("live: the engine does not answer", true);
      return;
    }
    for (const fresh of page.querySelectorAll("[data-live][id]")) {
      const old = document.getElementById(fresh.id);
      if (!old) continue;
      const adopted = document.importNode(fresh, true);
      old.replaceWith(adopted);
      rendered.set(adopted, Date.now());
    }
    const footer = page.querySelector("footer");
    const here = document.querySelector("footer");
    if (footer && here) here.replaceWith(document.importNode(footer, true));
    tick();
    show(`live · updated ${new Date().toISOString().slice(11, 19)}Z`, false);
  }

  for (const section of document.querySelectorAll("[data-live]")) rendered.set(section, Date.now());
  show("live", false);
  tick();
  window.setInterval(tick, 1000);
  window.setInterval(refresh, refreshMs);
})();
