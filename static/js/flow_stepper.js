// The flow page's stepping, as a module any page with a stage can import (the flow page,
// a classroom console): one websocket to /ws/flow (docs/protocol.md) that re-attaches to
// the same recorded run after a drop, and the presenter's keys.
//
//   const flow = connectFlow({ slug, session, step, lang }, onMessage, onConnection);
//   flow.send({ type: "next" });
//   document.addEventListener("keydown", flowKeys({ next, back, ... }));

export function connectFlow(place, onMessage, onConnection = () => {}) {
  let socket = null;
  let retry = 0;
  const outbox = [];

  function open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/flow`);
    socket.addEventListener("open", () => {
      retry = 0;
      // Re-attach to the same recorded run at the step on screen: nothing is lost.
      socket.send(JSON.stringify({ type: "hello", slug: place.slug, session: place.session, step: place.step, lang: place.lang }));
      onConnection(true);
    });
    socket.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if ("session" in msg) place.session = msg.session;
      if ("step" in msg) place.step = msg.step;
      onMessage(msg);
      if (msg.type === "ready" || msg.type === "sync") flush();
    });
    socket.addEventListener("close", () => {
      onConnection(false);
      retry = Math.min(retry + 1, 6);
      setTimeout(open, 250 * 2 ** retry);
    });
  }

  function flush() {
    while (outbox.length && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(outbox.shift()));
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN && outbox.length === 0) {
      socket.send(JSON.stringify(message));
    } else {
      outbox.push(message);
    }
  }

  open();
  return { send, place };
}

// The keys of the flow page: → Space PageDown next, ← PageUp back, Home restart, P play,
// ? help, F presenter, L ladder, B blank (presenter only). Missing actions are ignored.
export function flowKeys(actions, { isOpen = () => false, blank = null } = {}) {
  const map = {
    ArrowRight: "next", " ": "next", PageDown: "next",
    ArrowLeft: "back", PageUp: "back",
    Home: "restart", p: "play", P: "play", "?": "help",
    f: "presenter", F: "presenter", l: "ladder", L: "ladder", b: "blank", B: "blank",
  };
  return (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (isOpen() && e.key !== "?") return;
    if (tag === "BUTTON" && (e.key === " " || e.key === "Enter")) return; // a focused button does its own job
    const name = map[e.key];
    if (blank && !blank.hidden && name !== "blank") blank.hidden = true;
    const fn = name && actions[name];
    if (fn) {
      e.preventDefault();
      fn();
    }
  };
}
