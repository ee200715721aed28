// Live GPU panel: polls /gpu_status from the browser and draws one memory bar per GPU.
// The server caches the NVML reading, so many tabs polling cost one reading per half second.
(() => {
  const GIB = 1024 ** 3;
  const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (bytes) => (bytes / GIB).toFixed(1);

  function gpuBlock(gpu) {
    const percent = Math.round(100 * gpu.memory_used_fraction);
    const level = gpu.warning_level || "ok";
    const facts = [
      `${fmt(gpu.memory_used_bytes)} / ${fmt(gpu.memory_total_bytes)} GiB used (${percent} %)`,
      gpu.utilization_percent == null ? null : `${gpu.utilization_percent} % busy`,
      gpu.temperature_c == null ? null : `${gpu.temperature_c} °C`,
      gpu.power_draw_w == null ? null : `${Math.round(gpu.power_draw_w)} W`,
      gpu.this_process_used_bytes == null ? null : `this app ${fmt(gpu.this_process_used_bytes)} GiB`,
    ].filter(Boolean).join(" · ");
    const advice = level === "ok" ? "" :
      `<div class="gpu-advice" role="alert">GPU memory is ${percent} % used: the next job may be downgraded or ` +
      `run out of memory. Lower the resolution or the number of frames, or wait for other jobs to finish.</div>`;
    return `<div class="gpu gpu-${level}" data-level="${level}" data-index="${gpu.index}">` +
      `<div class="gpu-name">GPU ${gpu.index}: ${esc(gpu.name)}</div>` +
      `<div class="gpu-bar" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent}">` +
      `<div class="gpu-fill" style="width:${percent}%"></div></div>` +
      `<div class="gpu-facts">${esc(facts)}</div>${advice}</div>`;
  }

  function duration(seconds) {
    const hours = Math.floor(seconds / 3600), minutes = Math.floor(seconds / 60) % 60;
    if (hours) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
    return minutes ? `${minutes} min` : `${Math.floor(seconds)} s`;
  }

  // Uptime, and the idle auto-stop countdown when it is on: on a rented GPU both are money.
  function appLine(app) {
    if (!app) return "";
    let text = `App up ${duration(app.uptime_s)}`;
    if (app.idle_stop_in_s != null) {
      text += ` · stops itself after ${duration(app.idle_stop_after_s)} without a job` +
        (app.idle_stop_in_s < app.idle_stop_after_s ? ` (in ${duration(app.idle_stop_in_s)})` : "");
    }
    return `<div class="app-line" id="app-line" data-uptime="${Math.floor(app.uptime_s)}"` +
      ` data-idle-in="${app.idle_stop_in_s ?? ""}">${esc(text)}</div>`;
  }

  function render(panel, data) {
    if (!data.gpu_present) {
      panel.dataset.state = "none";
      panel.innerHTML = `<div class="gpu-none"><strong>No NVIDIA GPU found</strong> (${esc(data.reason)}). ` +
        `This app is running on ${esc(panel.dataset.runsOn)}.</div>` + appLine(data.app);
      return;
    }
    panel.dataset.state = data.warning_level;
    panel.innerHTML = data.gpus.map(gpuBlock).join("") + appLine(data.app);
  }

  async function poll() {
    const panel = document.getElementById("gpu-panel");
    const every = Number(panel?.dataset.pollMs || 2000);
    if (panel && !document.hidden) {
      try {
        const response = await fetch("gpu_status", {cache: "no-store", credentials: "same-origin"});
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        render(panel, await response.json());
      } catch (error) {
        panel.dataset.state = "unreachable";
        panel.innerHTML = `<div class="gpu-none">GPU status unavailable: the server is not answering (${esc(error.message)}).</div>`;
      }
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, 200);
})();
