// Keyboard for the study pages: 1–4 pick a choice (ア〜エ), Enter goes on.
// The forms work without this file; it only adds keys, focus after htmx swaps, and the
// speed-round countdown.
(() => {
  "use strict";

  const typing = (el) =>
    el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const active = document.activeElement;
    if (/^[1-4]$/.test(event.key) && !typing(active)) {
      const button = document.querySelector(`.quiz-card button[data-key="${event.key}"]`);
      if (button && !button.disabled) {
        event.preventDefault();
        button.click();
      }
      return;
    }
    if (event.key === "Enter" && !typing(active) &&
        !(active && ["BUTTON", "A"].includes(active.tagName))) {
      const next = document.querySelector("[data-next]");
      if (next) {
        event.preventDefault();
        next.click();
      }
    }
  });

  // After htmx puts in a new question or its feedback, move focus where the learner acts.
  const settle = (root) => {
    const target = root.querySelector("[data-next]") || root.querySelector("input[name=answer]") ||
      root.querySelector(".prompt");
    if (target) target.focus({ preventScroll: false });
    startCountdown(root);
  };
  document.body.addEventListener("htmx:afterSettle", (event) => {
    const slot = event.detail && event.detail.target;
    if (slot && slot.classList && slot.classList.contains("quiz-card")) settle(slot);
  });

  // Our 400/422 answers are fragments meant for the card ("type a number", "try again"):
  // show them. Anything else (a server error, a lost run) reloads the page from the server.
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 400 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:responseError", (event) => {
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
  startCountdown(document);
})();
