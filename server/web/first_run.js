// diffgraph's web client extension: the first time this browser opens diffgraph, show a workflow
// that runs here instead of an empty canvas or the client's built-in graph (whose nodes diffgraph
// may not have). Later opens keep whatever the user had.
const app = window.comfyAPI.app.app
const api = window.comfyAPI.api.api
const DONE_KEY = 'diffgraph.firstRunDone'
const SETTLE_MS = 1500

function missingTypes(graph) {
  const known = window.LiteGraph?.registered_node_types ?? {}
  return (graph?.nodes ?? []).filter((node) => !(node.type in known))
}

async function showRunnableWorkflow() {
  if (localStorage.getItem(DONE_KEY)) return
  localStorage.setItem(DONE_KEY, new Date().toISOString())
  const graph = app.graph
  const empty = !graph || graph.nodes.length === 0
  if (!empty && missingTypes(graph).length === 0) return
  const url = api.fileURL ? api.fileURL('/templates/first_run.json') : 'templates/first_run.json'
  const response = await fetch(url)
  if (!response.ok) {
    console.warn(`diffgraph: no first-run workflow (${response.status})`)
    return
  }
  await app.loadGraphData(await response.json())
}

app.registerExtension({
  name: 'diffgraph.FirstRun',
  async setup() {
    // The client restores the user's last workflow after extensions are set up; wait for it to settle.
    setTimeout(() => {
      showRunnableWorkflow().catch((error) => console.warn('diffgraph first run:', error))
    }, SETTLE_MS)
  }
})
