// The live blog: a minimal single-page app. Links marked data-route change the
// address with history.pushState and render in place; back/forward re-render on
// popstate. It knows nothing about Lumen: t.js notices the navigations itself.
const STOPS = {
  '/live/': ['Live: the night-train timetable', 'Pick a stop above to follow the sleeper from the Atlantic to the Baltic.'],
  '/live/lisbon': ['Lisbon: boarding at Santa Apolónia', 'The sleeper leaves at 21:18. Couchettes are full; two berths left in the first sleeping car.'],
  '/live/vienna': ['Vienna: a dawn change of engines', 'A 40-minute stop at Hauptbahnhof while the locomotive is swapped. Coffee on platform 9.'],
  '/live/stockholm': ['Stockholm: arrival on time', 'The train rolled in at 10:02 after 2,900 km. Readers sent this page to each other 300 times overnight.'],
};

function render() {
  const [headline, story] = STOPS[location.pathname] || STOPS['/live/'];
  document.getElementById('headline').textContent = headline;
  document.getElementById('story').textContent = story;
  document.title = `${headline} · The Lumen Gazette`;
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-route]');
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  history.pushState({ route: link.pathname }, '', link.pathname);
  render();
});
window.addEventListener('popstate', render);
render();
