// Predict mode: keys 1–4 choose a candidate, Enter sends, and after htmx puts in the
// next question focus moves to the verdict so keyboard and screen-reader users hear it.
// The form works without this file (a plain POST); it only adds keys and focus.

const typing = (el) =>
  el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName)) &&
  el.type !== "radio";

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const form = document.querySelector(".predict-form");
  if (!form) return;
  const active = document.activeElement;
  if (/^[1-4]$/.test(event.key) && !typing(active)) {
    const radio = form.querySelector(`input[type=radio][data-key="${event.key}"]`);
    if (radio) {
      event.preventDefault();
      radio.checked = true;
      radio.focus();
    }
  } else if (event.key === "Enter" && active && active.type === "radio" && form.contains(active)) {
    // Radios do not submit on Enter by themselves in every browser.
    event.preventDefault();
    form.requestSubmit();
  }
});

// htmx swaps the whole turn: put focus on the verdict (or the score at the end).
// On afterSwap (after htmx restored focus to the old field, before any key can come),
// not afterSettle: 20 ms later it would steal focus from a quick key press.
document.body.addEventListener("htmx:afterSwap", () => {
  const turn = document.getElementById("predict-turn");
  if (!turn) return;
  const target = turn.querySelector("#predict-error") || turn.querySelector("#predict-score-h") ||
    turn.querySelector("#predict-feedback");
  if (target) {
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus();
  }
});

// A plain POST comes back to #predict-turn: start there, on the verdict.
if (location.hash === "#predict-turn") {
  document.getElementById("predict-feedback")?.focus();
}
