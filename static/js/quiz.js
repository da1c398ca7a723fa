// Keyboard for the study pages: 1–4 pick a choice (ア〜エ), Enter goes on.
// The forms work without this file; it only adds keys, focus after htmx swaps, and the
// speed-round countdown.
//
// The question pages load it in <head> without `defer` (it is small and cached for a year),
// so the key handler is there before the first question is on screen: a learner who answers
// at once must not lose the key. (The results page, with no answer to lose, defers it.) Everything here listens on `document` (htmx events bubble to it), because
// <body> does not exist yet when this runs.
(() => {
  "use strict";

  const typing = (el) =>
    el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const inCard = (el) => el && el.closest && el.closest(".quiz-card");

  // While the card's request is out (an answer, or the next question), the card on screen is
  // stale: a key pressed now would hit an old button (a second answer racing the first) or find
  // none (a lost answer). Keep such keys, in order, and apply each to the card that arrives
  // ("1", Enter, "3" typed fast answer question 1, go on, answer question 2).
  // `out` is the xhr of the card's latest request: a card that settles while a newer request is
  // out is stale as well, and a response older than the latest request must not replace the card
  // (a queued or second request can come back first).
  let out = null;
  const pending = [];
  const PENDING_MAX = 8; // a held-down key repeats; a learner never means more than this

  const act = (key) => {
    if (/^[1-4]$/.test(key)) {
      const button = document.querySelector(`.quiz-card button[data-key="${key}"]`);
      if (!button || button.disabled) return false;
      // htmx binds the page's first card only at DOMContentLoaded; a key may come before.
      // Without htmx yet, the click posts the plain form.
      if (window.htmx && button.form) window.htmx.process(button.form);
      button.click();
      return true;
    }
    const next = document.querySelector("[data-next]");
    if (!next) return false;
    next.click();
    return true;
  };

  // Apply the kept keys until one sends a request (the rest wait for its card).
  const drain = () => {
    while (out === null && pending.length) if (act(pending.shift())) break;
  };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const active = document.activeElement;
    const digit = /^[1-4]$/.test(event.key);
    // Enter on a focused button or link is the browser's own click; leave it be, except on the
    // stale card, where it would send a second request for the old card.
    const own = active && ["BUTTON", "A"].includes(active.tagName);
    const enter = event.key === "Enter" && (!own || (out !== null && inCard(active)));
    if ((!digit && !enter) || typing(active)) return;
    if (out !== null) {
      event.preventDefault();
      if (pending.length < PENDING_MAX) pending.push(event.key);
      return;
    }
    if (act(event.key)) event.preventDefault();
  });

  // After htmx puts in a new question or its feedback, move focus where the learner acts.
  const settle = (root) => {
    const target = root.querySelector("[data-next]") || root.querySelector("input[name=answer]") ||
      root.querySelector(".prompt");
    if (target) target.focus({ preventScroll: false });
    startCountdown(root);
  };
  const isCard = (el) => el && el.classList && el.classList.contains("quiz-card");
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (inCard(event.detail && event.detail.elt)) out = event.detail.xhr;
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    // A request that put nothing in (network error, or a reload follows): forget the keys.
    if (event.detail.xhr === out && !event.detail.successful) {
      out = null;
      pending.length = 0;
    }
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    // htmx binds swapped-in content only when it settles (20 ms later, more on a busy phone),
    // but Chromium autofocuses the first feedback's "Next question" at its next frame, before
    // that: Enter there was a plain link's full page load, and keys pressed meanwhile were
    // lost. Bind the new card at once.
    if (isCard(event.detail.target) && window.htmx) window.htmx.process(event.detail.target);
  });
  document.addEventListener("htmx:afterSettle", (event) => {
    const slot = event.detail && event.detail.target;
    if (!isCard(slot) || (out !== null && event.detail.xhr !== out)) return;
    out = null;
    settle(slot);
    drain();
  });

  // Our 400/422 answers are fragments meant for the card ("type a number", "try again"):
  // show them. Anything else (a server error, a lost run) reloads the page from the server.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 400 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
    // The answer to a request that a newer one has overtaken describes a card no longer shown.
    if (isCard(event.detail.target) && out !== null && event.detail.xhr !== out) {
      event.detail.shouldSwap = false;
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    if (status !== 400 && status !== 422) window.location.reload();
  });

  // Speed round: show the seconds left; when they run out, show the result.
  let timer = null;
  const startCountdown = (root) => {
    const clock = root.querySelector("[data-left-ms]");
    if (!clock) return;
    const end = performance.now() + Number(clock.dataset.leftMs);
    if (timer) clearInterval(timer);
    timer = setInterval(() => {
      const left = Math.max(0, Math.ceil((end - performance.now()) / 1000));
      clock.textContent = String(left);
      if (left === 0) {
        clearInterval(timer);
        timer = null;
        window.location.assign(clock.dataset.runUrl);
      }
    }, 250);
  };
  document.addEventListener("DOMContentLoaded", () => startCountdown(document));
})();
