-- Argo CD health of a toque.dev DriftMonitor, read from the status the Toque operator writes.
--
--   no status yet, or a status of an older generation  Progressing
--   Pending (no live version yet, first check to come)  Progressing
--   InsufficientData (fewer rows than minSamples)       Progressing
--   Healthy (no drift)                                  Healthy
--   Drifted (features, output or performance)           Degraded, naming what drifted
--   Failed                                              Degraded, with the reason
--   the last evaluation failed (Ready=False)            Degraded: the monitor is blind
--
-- Argo CD runs custom health scripts without Lua's string and math libraries (unless
-- resource.customizations.useOpenLibs is set), so this script uses neither.

local hs = {}

local function condition(type_)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return value
end

-- The message, and what the Biased condition says when it is raised (bias never changes
-- the phase, but whoever looks at the monitor wants to see it).
local function with_bias(message)
  local biased = condition("Biased")
  if biased ~= nil and biased.status == "True" then
    return message .. "; bias: " .. text(biased.message, text(biased.reason, ""))
  end
  return message
end

local function drifted()
  local s = obj.status
  local message = s.message
  if message == nil or message == "" then
    local parts = {}
    local drift = condition("Drifted")
    if drift ~= nil and drift.status == "True" then
      table.insert(parts, text(drift.message, "drift detected"))
    elseif s.driftedFeatures ~= nil and #s.driftedFeatures > 0 then
      table.insert(parts, "drifted features: " .. table.concat(s.driftedFeatures, ", "))
    end
    local performance = condition("PerformanceDegraded")
    if performance ~= nil and performance.status == "True" then
      table.insert(parts, text(performance.message, "performance dropped"))
    end
    message = text(table.concat(parts, "; "), "drift detected")
  end
  return with_bias(message)
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Toque operator to evaluate the monitor"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the Toque operator to see generation " .. tostring(generation)
    .. " (the status is of generation " .. tostring(observed) .. ")"
  return hs
end

local phase = obj.status.phase
local ready = condition("Ready")

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = obj.status.message
  if (hs.message == nil or hs.message == "") and ready ~= nil then
    hs.message = ready.message
  end
  hs.message = text(hs.message, "the monitor failed")
  return hs
end

if phase == "Pending" then
  hs.status = "Progressing"
  hs.message = obj.status.message
  if (hs.message == nil or hs.message == "") and ready ~= nil then
    hs.message = ready.message
  end
  hs.message = text(hs.message, "waiting for the first evaluation")
  return hs
end

-- A verdict is on record, but the last evaluation could not be made (Prometheus or MLflow
-- down, buckets that no longer match): the verdict is stale and drift would go unseen.
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = "the last evaluation failed (" .. text(ready.reason, "Ready=False") .. "): "
    .. text(ready.message, "")
    .. "; the last verdict, " .. phase .. ", may be stale"
  return hs
end

if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = with_bias(text(obj.status.message, "no drift"))
  return hs
end

if phase == "Drifted" then
  hs.status = "Degraded"
  hs.message = drifted()
  return hs
end

if phase == "InsufficientData" then
  hs.status = "Progressing"
  hs.message = text(obj.status.message, "insufficient data")
  return hs
end

hs.status = "Unknown"
hs.message = "unknown phase " .. tostring(phase)
return hs
