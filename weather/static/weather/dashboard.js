// The dashboard's Refresh buttons: a file, so the Content-Security-Policy allows no inline script.
(() => {
  const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const show = (cell, text, state) => { cell.textContent = text; cell.className = "state state-" + state; };
  // A reading in the format the page rendered it with (the cell's data-decimals, from the view).
  const put = (cell, value) => { cell.textContent = value == null ? "\u2013" : Number(value).toFixed(Number(cell.dataset.decimals)); };
  const seconds = ms => `${(ms / 1000).toFixed(2)} s`;

  // States after which a task changes no more; anything else is polled again.
  const FINAL = new Set(["SUCCESS", "FAILURE", "REVOKED", "REJECTED", "IGNORED"]);
  // Past the time the server presumes a pending fetch lost, stop asking and say so.
  const GIVE_UP_MS = Number(document.getElementById("cities").dataset.giveUpMs);
  // A click's fetch ends within a fraction of a second: ask every 25 ms for its first second, so its
  // result shows within tens of milliseconds of the task's end (the browser test measures it), then
  // every 250 ms up to 5 s, then once a second. A pending poll costs the server one indexed read.
  const pollDelay = waited => (waited < 1000 ? 25 : waited < 5000 ? 250 : 1000);
  const readJson = async response => {
    const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  };

  async function follow(row, statusUrl, startedAt) {
    const cell = row.querySelector(".state");
    for (;;) {
      const body = await readJson(await fetch(statusUrl, {credentials: "same-origin"}));
      const waited = performance.now() - startedAt;
      if (body.state === "SUCCESS") {
        // The stored reading is the task's result: shown at once, without another request.
        const reading = body.result;
        put(row.querySelector(".temperature"), reading.temperature);
        put(row.querySelector(".humidity"), reading.humidity);
        put(row.querySelector(".pressure"), reading.pressure);
        row.querySelector(".observed").textContent = reading.observed_at.slice(0, 16).replace("T", " ");
        const ran = body.run_seconds == null ? "" : `ran ${body.run_seconds.toFixed(2)} s, `;
        show(cell, `SUCCESS · ${ran}shown ${seconds(waited)} after the click`, "SUCCESS");
        // For the browser test: when the task ended (the worker's clock) and when its result appeared.
        row.dataset.doneAt = body.date_done || "";
        row.dataset.shownAt = String(Date.now());
        return;
      }
      if (FINAL.has(body.state)) { show(cell, `${body.state} · ${body.error || "no reading"}`, "FAILURE"); return; }
      show(cell, `${body.state} · ${seconds(waited)}`, body.state);
      if (waited > GIVE_UP_MS) { show(cell, `still ${body.state} after ${GIVE_UP_MS / 1000} s; try again later`, "FAILURE"); return; }
      await new Promise(resolve => setTimeout(resolve, pollDelay(waited)));
    }
  }

  document.querySelectorAll("button.refresh").forEach(button => button.addEventListener("click", async () => {
    const row = button.closest("tr");
    const cell = row.querySelector(".state");
    const startedAt = performance.now();
    button.disabled = true;
    show(cell, "QUEUED", "PENDING");
    try {
      const response = await fetch(`/cities/${row.dataset.cityId}/refresh`, {
        method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": token},
      });
      const body = await readJson(response);
      row.dataset.taskId = body.task_id;
      await follow(row, body.status_url, startedAt);
    } catch (error) {
      show(cell, error.message || String(error), "FAILURE");
    } finally {
      button.disabled = false;
    }
  }));
})();
