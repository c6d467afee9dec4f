// The dashboard's Refresh buttons: a file, so the Content-Security-Policy allows no inline script.
(() => {
  const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const show = (cell, text, state) => { cell.textContent = text; cell.className = "state state-" + state; };

  // States after which a task changes no more; anything else is polled again.
  const FINAL = new Set(["SUCCESS", "FAILURE", "REVOKED", "REJECTED", "IGNORED"]);
  // Past the time the server presumes a pending fetch lost, stop asking and say so.
  const GIVE_UP_MS = Number(document.getElementById("cities").dataset.giveUpMs);
  const readJson = async response => {
    const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  };

  async function follow(row, statusUrl, startedAt) {
    const cell = row.querySelector(".state");
    for (let delay = 300; ; delay = Math.min(delay * 1.5, 2000)) {
      const body = await readJson(await fetch(statusUrl, {credentials: "same-origin"}));
      const waited = performance.now() - startedAt;
      const ran = body.run_seconds == null ? "" : ` (ran ${body.run_seconds.toFixed(1)} s)`;
      if (body.state === "SUCCESS") {
        // The new reading first, then the word SUCCESS beside it.
        const city = await readJson(await fetch(`/api/cities/${row.dataset.cityId}`));
        const latest = city.latest;
        row.querySelector(".temperature").textContent = latest.temperature;
        row.querySelector(".humidity").textContent = latest.humidity;
        row.querySelector(".pressure").textContent = latest.pressure;
        row.querySelector(".observed").textContent = latest.observed_at.slice(0, 16).replace("T", " ");
      }
      show(cell, `${body.state} · ${(waited / 1000).toFixed(1)} s${ran}`, body.state);
      if (body.state === "SUCCESS") return;
      if (FINAL.has(body.state)) { show(cell, `${body.state} · ${body.error || "no reading"}`, "FAILURE"); return; }
      if (waited > GIVE_UP_MS) { show(cell, `still ${body.state} after ${GIVE_UP_MS / 1000} s; try again later`, "FAILURE"); return; }
      await new Promise(resolve => setTimeout(resolve, delay));
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
      await follow(row, body.status_url, startedAt);
    } catch (error) {
      show(cell, error.message || String(error), "FAILURE");
    } finally {
      button.disabled = false;
    }
  }));
})();
