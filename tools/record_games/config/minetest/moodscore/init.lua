-- Recording helper for tools/record_games/minetest.py (installed as a world mod of the recorder's
-- own world; nothing else loads it). It keeps the sun up and turns the player's gaze slowly and
-- at random, as someone looking around while walking does; the recorder holds "forward" and
-- jumps from the keyboard. Seeded, so a run repeats.

local seed = tonumber(minetest.settings:get("moodscore_seed") or "1")
local rng = PcgRandom(seed)
local turn = 0.0
local until_change = 0.0

minetest.register_on_joinplayer(function(player)
    minetest.set_timeofday(tonumber(minetest.settings:get("moodscore_time") or "0.45"))
    player:set_look_vertical(0.15)
end)

minetest.register_globalstep(function(dtime)
    until_change = until_change - dtime
    if until_change <= 0 then
        -- A new turning rate (radians per second) for the next 1-4 s; mostly gentle.
        turn = (rng:next(-100, 100) / 100.0) * 0.9
        if rng:next(1, 6) == 1 then
            turn = 0.0
        end
        until_change = rng:next(10, 40) / 10.0
    end
    for _, player in ipairs(minetest.get_connected_players()) do
        player:set_look_horizontal(player:get_look_horizontal() + turn * dtime)
    end
end)
