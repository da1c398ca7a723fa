// MailFlow Lab classroom room: the teacher's console and the students' phones.
// Every <li> and every question shown is HTML the server rendered; the page only
// places it. Who is teacher or student comes from HttpOnly cookies, never from here.

import { createStage } from "./stage.js";

const root = document.getElementById("room");
const log = document.getElementById("log");
const progress = document.getElementById("progress");
const bar = document.getElementById("progress-bar");
const status = document.getElementById("status");
const pollArea = document.getElementById("poll");
const results = document.getElementById("results");
const joined = document.getElementById("joined");
const role = root.dataset.role;
// The stage (the same server-rendered SVG as the flow page) shows the step looked at.
const stage = createStage(document.getElementById("stage"));
const buttons = Object.fromEntries(
  [...root.querySelectorAll("[data-action]")].map((el) => [el.dataset.action, el]),
);

const state = {
  code: root.dataset.code,
  lang: root.dataset.lang,
  step: Number(root.dataset.step), // the teacher's step
  total: Number(root.dataset.total),
  view: Number(root.dataset.step), // the step this student looks at (≤ the teacher's)
  follow: true,
  poll: null,
  ended: false,
};

let socket = null;
let retry = 0;
let timer = 0;

function connect() {
  clearTimeout(timer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/room`);
  socket.addEventListener("open", () => {
    retry = 0;
    socket.send(JSON.stringify({ type: "hello", code: state.code, role, lang: state.lang }));
    if (status.textContent) status.textContent = root.dataset.labelOnline;
  });
  socket.addEventListener("message", (e) => receive(JSON.parse(e.data)));
  socket.addEventListener("close", () => {
    if (state.gone) return;
    status.textContent = root.dataset.labelOffline;
    retry = Math.min(retry + 1, 5);
    timer = setTimeout(connect, 250 * 2 ** retry);
  });
}

// A phone that slept comes back: reconnect at once, the server resyncs to the teacher.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && socket && socket.readyState === WebSocket.CLOSED) connect();
});
window.addEventListener("online", () => { if (socket && socket.readyState === WebSocket.CLOSED) connect(); });

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function receive(msg) {
  switch (msg.type) {
    case "sync":
      log.innerHTML = msg.html;
      position(msg);
      setPoll(msg.poll, msg.poll_html, msg.poll_state);
      if (joined) joined.textContent = msg.joined;
      setLocked(msg.locked);
      if (msg.ended) ended(msg.results_html);
      break;
    case "step":
      if (!log.querySelector(`#ev-${msg.step}`)) log.insertAdjacentHTML("beforeend", msg.html);
      position(msg);
      if (state.follow) log.lastElementChild?.scrollIntoView({ block: "nearest" });
      break;
    case "back":
    case "log":
      if (msg.type === "log") log.innerHTML = msg.html;
      for (const li of [...log.children]) if (Number(li.dataset.step) > msg.step) li.remove();
      position(msg);
      break;
    case "lock":
      setLocked(msg.locked);
      break;
    case "unpoll":
      setPoll(null, "", null);
      break;
    case "poll":
    case "reveal":
    case "tally":
      setPoll(msg.poll, msg.html, msg.type === "tally" ? state.pollState : msg.type);
      break;
    case "answered": {
      const note = pollArea.querySelector(".poll-note");
      const label = msg.status === "ok" ? root.dataset.labelAnswered : root.dataset[`labelAnswer${msg.status[0].toUpperCase()}${msg.status.slice(1)}`];
      if (note && label) note.textContent = label;
      break;
    }
    case "count":
      if (joined) joined.textContent = msg.joined;
      break;
    case "ended":
      ended(msg.html);
      break;
    case "end_of_run":
      break;
    case "gone":
      state.gone = true;
      status.textContent = root.dataset.labelGone || "";
      socket.close();
      break;
    case "error":
      status.textContent = msg.message;
      break;
  }
}

function position(msg) {
  state.step = msg.step;
  state.total = msg.total;
  if (state.follow || state.view > state.step) state.view = state.step;
  progress.textContent = `${state.view} / ${msg.total}`;
  if (bar) { bar.max = msg.total; bar.value = msg.step; }
  if (role === "teacher") {
    buttons.next.disabled = msg.step >= msg.total;
    buttons.back.disabled = msg.step <= 0;
  }
  mark();
}

// The line being looked at carries aria-current="step", as on the flow page.
function mark() {
  for (const li of log.querySelectorAll('[aria-current="step"]')) li.removeAttribute("aria-current");
  if (stage.step !== state.view) stage.show(state.view);
  const li = log.querySelector(`#ev-${state.view}`);
  if (li) {
    li.setAttribute("aria-current", "step");
    if (!state.follow) li.scrollIntoView({ block: "nearest" });
  }
  if (role === "student") {
    buttons.back.disabled = state.view <= 1;
    buttons.forward.disabled = state.view >= state.step;
    buttons.follow.setAttribute("aria-pressed", String(state.follow));
    progress.textContent = `${state.view} / ${state.total}`;
  }
}

function setPoll(id, html, pollState) {
  state.poll = id;
  state.pollState = pollState;
  pollArea.innerHTML = html || "";
  if (role === "teacher") {
    buttons.reveal.hidden = !id || pollState === "reveal";
    buttons.unpoll.hidden = !id;
  }
}

function setLocked(on) {
  if (!buttons.lock) return;
  buttons.lock.setAttribute("aria-pressed", String(on));
  buttons.lock.textContent = on ? root.dataset.labelUnlock : root.dataset.labelLock;
}

function ended(html) {
  state.ended = true;
  results.innerHTML = html;
  if (buttons.end) buttons.end.disabled = true;
}

// Students answer by tapping a choice; the server takes only the first answer.
pollArea.addEventListener("click", (e) => {
  const choice = e.target.closest("[data-choice]");
  if (!choice || role !== "student" || choice.disabled) return;
  for (const b of pollArea.querySelectorAll("[data-choice]")) b.disabled = true;
  choice.classList.add("chosen");
  choice.setAttribute("aria-pressed", "true");
  send({ type: "answer", poll: state.poll, choice: Number(choice.dataset.choice) });
});

const teacherActions = {
  next: () => send({ type: "next" }),
  back: () => send({ type: "back" }),
  restart: () => send({ type: "goto", step: 0 }),
  lock: () => send({ type: "lock", on: buttons.lock.getAttribute("aria-pressed") !== "true" }),
  end: () => { if (confirm(root.dataset.confirmEnd)) send({ type: "end" }); },
  "poll-predict": () => send({ type: "poll", kind: "predict" }),
  "poll-exam": () => send({ type: "poll", kind: "exam", question: root.querySelector("[data-question]").value }),
  reveal: () => send({ type: "reveal" }),
  unpoll: () => send({ type: "unpoll" }),
};

// Looking back never goes past the teacher: "forward" stops at the teacher's step.
const studentActions = {
  back: () => { state.follow = false; state.view = Math.max(1, state.view - 1); mark(); },
  forward: () => {
    state.view = Math.min(state.step, state.view + 1);
    state.follow = state.view >= state.step;
    mark();
  },
  follow: () => { state.follow = true; state.view = state.step; mark(); log.lastElementChild?.scrollIntoView({ block: "nearest" }); },
};

const actions = role === "teacher" ? teacherActions : studentActions;
for (const [name, el] of Object.entries(buttons)) {
  if (actions[name]) el.addEventListener("click", (e) => { e.preventDefault(); actions[name](); });
}

// The same keys and clicker as the flow page (teacher); students use arrows to look back.
document.addEventListener("keydown", (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const tag = e.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
  if (tag === "BUTTON" && (e.key === " " || e.key === "Enter")) return;
  const map = role === "teacher"
    ? { ArrowRight: actions.next, " ": actions.next, PageDown: actions.next,
        ArrowLeft: actions.back, PageUp: actions.back, Home: actions.restart,
        f: () => document.body.classList.toggle("present"), F: () => document.body.classList.toggle("present") }
    : { ArrowLeft: actions.back, ArrowRight: actions.forward, End: actions.follow };
  const fn = map[e.key];
  if (fn) { e.preventDefault(); fn(); }
});

// Presenter mode (F), as on the flow page: its controls show while the mouse moves.
let pointerTimer = 0;
if (role === "teacher") {
  document.addEventListener("mousemove", () => {
    document.body.classList.add("pointer-active");
    clearTimeout(pointerTimer);
    pointerTimer = setTimeout(() => document.body.classList.remove("pointer-active"), 2500);
  });
}

// The page opens mid-class: the stage shows the step at once, still.
stage.show(state.view, { animate: false });
mark();
connect();
