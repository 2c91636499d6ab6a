// The daily chart (templates/billing/_daily_chart.html): a click or tap on a day shows that day's figures (its
// <title>, which hovering shows on a desktop) under the chart and marks the day; dragging a finger across the
// phone's chart moves through the days. Delegated from the document, so charts swapped in later work too.
(function () {
  "use strict";

  function show(day) {
    var figure = day.closest("[data-chart-figure]");
    var readout = figure && figure.querySelector("[data-chart-readout]");
    var title = day.querySelector("title");
    if (!readout || !title) return;
    figure.querySelectorAll("g.day.selected").forEach(function (g) { g.classList.remove("selected"); });
    day.classList.add("selected");
    readout.textContent = title.textContent;
    readout.hidden = false;
  }

  document.addEventListener("click", function (event) {
    var day = event.target.closest && event.target.closest("svg[data-chart] g.day");
    if (day) show(day);
  });

  document.addEventListener("pointermove", function (event) {
    if (event.pointerType !== "touch" || !event.target.closest || !event.target.closest("svg[data-chart]")) return;
    var under = document.elementFromPoint(event.clientX, event.clientY);
    var day = under && under.closest && under.closest("svg[data-chart] g.day");
    if (day && !day.classList.contains("selected")) show(day);
  });
})();
