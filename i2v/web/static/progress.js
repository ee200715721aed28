// The job shown under Generate (#job-status, drawn by progress_panel.py) also speaks where the eye may be elsewhere:
// the tab's title ("37% — I2V Studio", "✓ done — I2V Studio") and, when a long job ends, a browser notification
// (permission is asked on the first click on Generate: browsers ignore requests that no click started).
// Cancel answers at once ("Cancelling…") instead of after the server's round trip.
(() => {
  const BASE = "I2V Studio";
  const ENDED = {done: "✓ done", failed: "✖ failed", cancelled: "cancelled", interrupted: "interrupted"};
  // A job that ran at least this long gets a notification at its end (window.I2V_LONG_JOB_S overrides, for tests).
  const longJobSeconds = () => Number(window.I2V_LONG_JOB_S ?? 20);
  let seen = {job: null, state: null};

  function titleFor(job) {
    const state = job.dataset.state;
    if (state === "running") return job.dataset.cancelling ? `cancelling… — ${BASE}` : `${job.dataset.percent || 0}% — ${BASE}`;
    if (state === "queued") return `queued — ${BASE}`;
    return ENDED[state] ? `${ENDED[state]} — ${BASE}` : BASE;
  }

  // Done or failed only: a cancel was the user's own doing. data-took-s is the server's measure of the run.
  function notifyEnd(job) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (job.dataset.tookS === undefined || Number(job.dataset.tookS) < longJobSeconds()) return;
    const words = job.dataset.state === "done" ? "Your video is ready." : "The job failed: see the page for why.";
    try {
      new Notification(`${ENDED[job.dataset.state] || "ended"} — ${BASE}`, {body: words, tag: job.dataset.job});
    } catch (error) {  // some browsers allow notifications only from a service worker: the title still says it
      console.warn("no notification:", error);
    }
  }

  function follow() {
    const job = document.querySelector("#job-status [data-state]");
    if (!job) return;
    document.title = titleFor(job);
    const state = job.dataset.state, id = job.dataset.job || null;
    const wasActive = seen.job === id && (seen.state === "running" || seen.state === "queued");
    if (wasActive && ENDED[state]) notifyEnd(job);
    seen = {job: id, state};
  }

  function cancelClicked(button) {
    if (button.disabled) return;
    button.textContent = "Cancelling…";
    const job = document.querySelector("#job-status [data-state=running], #job-status [data-state=queued]");
    if (!job) return;
    job.dataset.cancelling = "true";
    // A running job keeps its bar and preview until the server answers; a queued one has only its line.
    const words = "<strong>Cancelling…</strong> asking the server to stop the job.";
    const label = job.querySelector(".progress-label");
    if (label) label.innerHTML = words; else job.innerHTML = words;
    follow();
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("#generate") && "Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});  // a refusal only costs the notification
    }
    const cancel = event.target.closest("#cancel");
    if (cancel) cancelClicked(cancel);
  }, true);
  setInterval(follow, 500);  // cheap, and survives Gradio replacing the status block on every poll
})();
