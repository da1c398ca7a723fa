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
  // none (a lost answer). Keep the last such key and apply it to the card that arrives.
  let busy = false;
  let pending = null;

  const act = (key) => {
    if (/^[1-4]$/.test(key)) {
      const button = document.querySelector(`.quiz-card button[data-key="${key}"]`);
      if (!button || button.disabled) return false;
      // htmx binds a swapped-in form only when the swap settles (20 ms later); bind it now so
      // an early key still goes through htmx. Without htmx yet, the click posts the plain form.
      if (window.htmx && button.form) window.htmx.process(button.form);
      button.click();
      return true;
    }
    const next = document.querySelector("[data-next]");
    if (!next) return false;
    next.click();
    return true;
  };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const active = document.activeElement;
    const digit = /^[1-4]$/.test(event.key);
    // Enter on a focused button or link is the browser's own click; leave it be.
    const enter = event.key === "Enter" && !(active && ["BUTTON", "A"].includes(active.tagName));
    if ((!digit && !enter) || typing(active)) return;
    if (busy) {
      event.preventDefault();
      pending = event.key;
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
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (inCard(event.detail && event.detail.elt)) busy = true;
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    // A request that put nothing in (network error, or a reload follows): forget the key.
    if (inCard(event.detail && event.detail.elt) && !event.detail.successful) {
      busy = false;
      pending = null;
    }
  });
  document.addEventListener("htmx:afterSettle", (event) => {
    const slot = event.detail && event.detail.target;
    if (!(slot && slot.classList && slot.classList.contains("quiz-card"))) return;
    busy = false;
    settle(slot);
    const key = pending;
    pending = null;
    if (key !== null) act(key);
  });

  // Our 400/422 answers are fragments meant for the card ("type a number", "try again"):
  // show them. Anything else (a server error, a lost run) reloads the page from the server.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 400 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
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
