"""HTTP routes declared the way ComfyUI packs declare them (aiohttp handlers on PromptServer.instance)."""

from aiohttp import web

from server import PromptServer

routes = PromptServer.instance.routes


@routes.get("/dg_test/hello/{name}")
async def hello(request):
    return web.json_response({"hello": request.match_info["name"], "loud": request.rel_url.query.get("loud")})


@routes.post("/dg_test/echo")
async def echo(request):
    body = await request.json()
    return web.json_response({"echo": body}, status=201)


@routes.get("/dg_test/missing")
async def missing(request):
    raise web.HTTPNotFound(text="nothing here")
