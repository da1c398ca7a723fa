// MailFlow Lab flow page: sends the learner's controls over the websocket and
// draws the events the server sends back. It never makes up a protocol line:
// every <li> it shows is HTML the server rendered from a recorded event.

import { connectFlow, flowKeys } from "./flow_stepper.js";
import { createStage } from "./stage.js";

const root = document.getElementById("flow");
const log = document.getElementById("log");
const progress = document.getElementById("progress");
const bar = document.getElementById("progress-bar");
const status = document.getElementById("status");
const summary = document.getElementById("summary");
const help = document.getElementById("help");
const blank = document.getElementById("blank");
const buttons = Object.fromEntries(
  [...document.querySelectorAll("[data-action]")].map((el) => [el.dataset.action, el]),
);
const stage = createStage(document.getElementById("stage"));
const ladder = document.getElementById("ladder");
const slideLink = document.querySelector("[data-slide]");

const state = {
  slug: root.dataset.slug,
  session: root.dataset.session,
  step: Number(root.dataset.step),
  total: Number(root.dataset.total),
  lang: root.dataset.lang,
  playing: false,
};

const flow = connectFlow(state, receive, (online) => {
  if (online) {
    if (status.textContent) status.textContent = root.dataset.labelOnline;
  } else {
    status.textContent = root.dataset.labelOffline;
    setPlaying(false);
  }
});
const send = flow.send;

function receive(msg) {
  switch (msg.type) {
    case "ready":
      position(msg);
      break;
    case "sync":
      if (msg.stage_html) stage.replace(msg.stage_html, msg.step);
      if (msg.fresh) {
        // A new run: the ladder shows that run (loaded now if open, else when opened).
        ladder.dataset.loaded = "";
        if (!ladder.hidden) loadLadder().then(() => markLadder(state.step));
      }
      log.innerHTML = msg.html;
      if (msg.summary_html) summary.firstElementChild && replaceSummary(msg.summary_html);
      position(msg);
      break;
    case "step":
      log.insertAdjacentHTML("beforeend", msg.html);
      position(msg);
      // Instant, not smooth: a clicker pressed quickly must never leave the log behind.
      log.lastElementChild.scrollIntoView({ block: "nearest" });
      break;
    case "back":
      log.lastElementChild?.remove();
      position(msg);
      break;
    case "state":
    case "end":
      position(msg);
      break;
    case "error":
      status.textContent = msg.message;
      break;
  }
}

function replaceSummary(html) {
  const keep = summary.querySelector(":scope > p:last-child");
  summary.innerHTML = html;
  if (keep) summary.append(keep);
}

function position(msg) {
  state.step = msg.step;
  state.total = msg.total;
  progress.textContent = `${msg.step} / ${msg.total}`;
  bar.max = msg.total;
  bar.value = msg.step;
  buttons.next.disabled = msg.step >= msg.total;
  buttons.back.disabled = msg.step <= 0;
  summary.hidden = msg.step < msg.total;
  if ("playing" in msg) setPlaying(msg.playing);
  // The transcript's current line, the stage and the ladder follow the same step.
  for (const li of log.querySelectorAll(":scope > li[aria-current]")) li.removeAttribute("aria-current");
  log.lastElementChild?.setAttribute("aria-current", "step");
  if (stage.step !== msg.step) stage.show(msg.step);
  markLadder(msg.step);
  if (slideLink) {
    const href = new URL(slideLink.href);
    href.pathname = href.pathname.replace(/\/step\/\d+\.svg$/, `/step/${msg.step}.svg`);
    href.searchParams.set("session", state.session);
    slideLink.setAttribute("href", href.pathname + href.search);
    slideLink.download = `${state.slug}-${msg.step}.svg`;
  }
  const url = new URL(location.href);
  url.searchParams.set("step", msg.step);
  history.replaceState(null, "", url);
}

function setPlaying(on) {
  state.playing = on;
  buttons.play.textContent = on ? root.dataset.labelPause : root.dataset.labelPlay;
  buttons.play.setAttribute("aria-pressed", String(on));
}

// The ladder: the whole run as a sequence diagram, fetched (server-rendered) the first
// time it is opened; clicking an arrow jumps there.
async function toggleLadder() {
  const open = ladder.hidden;
  ladder.hidden = !open;
  buttons.ladder.setAttribute("aria-pressed", String(open));
  document.body.classList.toggle("ladder-open", open);
  if (open && !ladder.dataset.loaded) await loadLadder();
  if (open) markLadder(state.step);
}

async function loadLadder() {
  const src = new URL(ladder.dataset.src, location.href);
  src.searchParams.set("session", state.session);
  const r = await fetch(src);
  if (r.ok) {
    ladder.innerHTML = await r.text();
    ladder.dataset.loaded = "1";
  }
}

function markLadder(step) {
  if (ladder.hidden) return;
  for (const a of ladder.querySelectorAll("[data-step][aria-current]")) a.removeAttribute("aria-current");
  const here = ladder.querySelector(`[data-step="${step}"]`);
  if (here) {
    here.setAttribute("aria-current", "step");
    here.scrollIntoView({ block: "nearest" });
  }
}

ladder.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-step]");
  if (!a) return;
  e.preventDefault();
  send({ type: "goto", step: Number(a.dataset.step) });
});

const actions = {
  next: () => send({ type: "next" }),
  back: () => send({ type: "back" }),
  play: () => send({ type: state.playing ? "pause" : "play" }),
  restart: () => send({ type: "restart" }),
  help: () => (help.open ? help.close() : help.showModal()),
  ladder: toggleLadder,
};

for (const [name, el] of Object.entries(buttons)) {
  if (name === "speed") {
    el.addEventListener("change", () => send({ type: "speed", value: Number(el.value) }));
  } else if (actions[name]) {
    el.addEventListener("click", (e) => {
      e.preventDefault(); // the form still works without JavaScript
      actions[name]();
    });
  }
}

function togglePresenter() {
  document.body.classList.toggle("present");
}

function toggleBlank() {
  if (document.body.classList.contains("present")) blank.hidden = !blank.hidden;
}

document.addEventListener(
  "keydown",
  flowKeys({ ...actions, presenter: togglePresenter, blank: toggleBlank }, { isOpen: () => help.open, blank }),
);

// Presenter mode: controls stay hidden until the mouse moves.
let pointerTimer = 0;
document.addEventListener("mousemove", () => {
  document.body.classList.add("pointer-active");
  clearTimeout(pointerTimer);
  pointerTimer = setTimeout(() => document.body.classList.remove("pointer-active"), 2500);
});

// A deep link (?step=N) opens mid-story: the stage shows that step, still.
stage.show(state.step, { animate: false });
log.lastElementChild?.scrollIntoView({ block: "nearest" });
