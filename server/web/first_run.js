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

// Client 1.27.x registers model-folder providers for ComfyUI loaders by class name and then reads
// `.name` of each one's definition, which throws for loaders diffgraph does not have; the throw lands
// in the creation of every ckpt_name/vae_name/lora_name combo, which is then lost. Its asset browser
// is off by default, so starting that store already initialised and empty changes nothing else.
function repairOldModelStore() {
  const version = String(window.__COMFYUI_FRONTEND_VERSION__ ?? '')
  if (!version.startsWith('1.27.')) return
  const pinia = document.getElementById('vue-app')?.__vue_app__?.config.globalProperties.$pinia
  if (!pinia) return
  const store = pinia._s.get('modelToNode')
  if (store) {
    store.registerDefaults() // node definitions are registered by now: load the defaults, then prune
    for (const [folder, providers] of Object.entries(store.modelToNodeMap)) {
      store.modelToNodeMap[folder] = providers.filter((p) => p.nodeDef)
    }
  } else {
    pinia.state.value.modelToNode = { modelToNodeMap: {}, haveDefaultsLoaded: true }
  }
}

app.registerExtension({
  name: 'diffgraph.OldClientRepair',
  // after the node definitions are registered, before any graph is configured
  setup: repairOldModelStore
})
