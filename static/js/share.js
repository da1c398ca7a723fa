// Share button of the flow page: copy the deep link to this step (/flow/{slug}?step=N).
// Without clipboard permission the link is shown in a field, selected, to copy by hand.
const root = document.getElementById("flow");
const button = document.querySelector("[data-share]");
const fallback = document.querySelector("[data-share-fallback]");
const field = document.querySelector("[data-share-url]");
const status = document.getElementById("status");

function link() {
  // flow.js keeps ?step= in the address bar up to date; only slug and step are shared.
  const step = new URL(location.href).searchParams.get("step") ?? root.dataset.step;
  return `${location.origin}/flow/${encodeURIComponent(root.dataset.slug)}?step=${encodeURIComponent(step)}`;
}

if (root && button && fallback && field && status) {
  button.hidden = false; // without JavaScript the address bar is the link
  button.addEventListener("click", async () => {
    const url = link();
    field.value = url;
    try {
      await navigator.clipboard.writeText(url);
      status.textContent = `${root.dataset.labelCopied} ${url}`;
      fallback.hidden = true;
    } catch {
      status.textContent = root.dataset.labelCopyFailed;
      fallback.hidden = false;
      field.focus();
      field.select();
    }
  });
}
