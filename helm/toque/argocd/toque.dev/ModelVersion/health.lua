-- Argo CD health of a toque.dev ModelVersion, read from the status the Toque operator writes.
--
--   no status yet, or a status of an older generation  Progressing
--   Pending (queued), Registering                       Progressing
--   Progressing (canary steps, first rollout)           Progressing, with the step and weight
--   Paused (a pause step)                               Suspended, with the step and weight
--   Promoted                                            Healthy (Degraded when no serving pod
--                                                       is ready)
--   Superseded (an older version, kept warm)            Healthy
--   RolledBack, Aborted, Failed                         Degraded, with the reason
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

-- "canary weight 50% (actual 33%) against churn-v1, step 1/3"
local function canary()
  local s = obj.status
  if s.stableVersion == nil then
    return nil
  end
  local parts = {}
  if s.canaryWeight ~= nil then
    local weight = "canary weight " .. tostring(s.canaryWeight) .. "%"
    if s.actualCanaryWeight ~= nil and s.actualCanaryWeight ~= s.canaryWeight then
      weight = weight .. " (actual " .. tostring(s.actualCanaryWeight) .. "%)"
    end
    table.insert(parts, weight .. " against " .. s.stableVersion)
  else
    table.insert(parts, "canary against " .. s.stableVersion)
  end
  if s.currentStep ~= nil then
    local steps = 1 -- no steps: one step to 100 %
    local rollout = obj.spec and obj.spec.rollout
    if rollout ~= nil and rollout.steps ~= nil and #rollout.steps > 0 then
      steps = #rollout.steps
    end
    table.insert(parts, "step " .. tostring(s.currentStep) .. "/" .. tostring(steps))
  end
  return table.concat(parts, ", ")
end

local function rolling(status)
  local parts = { text(obj.status.message, obj.status.phase) }
  local where = canary()
  if where ~= nil then
    table.insert(parts, where)
  end
  local analysis = condition("AnalysisPassed")
  if analysis ~= nil and analysis.status == "Unknown" then
    table.insert(parts, "analysis: " .. text(analysis.message, text(analysis.reason, "")))
  end
  hs.status = status
  hs.message = table.concat(parts, "; ")
  return hs
end

local function serving()
  local s = obj.status
  local available = condition("Available")
  if available ~= nil and available.status == "False" then
    hs.status = "Degraded"
    hs.message = "promoted, but no serving pod is ready: " .. text(available.message, "")
    return hs
  end
  local what = "serving"
  if s.registry ~= nil and s.registry.version ~= nil then
    if s.registry.name ~= nil and s.registry.name ~= "" then
      what = what .. " " .. s.registry.name
    end
    what = what .. " version " .. s.registry.version
    if s.registry.alias ~= nil then
      what = what .. " as " .. s.registry.alias
    end
  end
  if available ~= nil and available.message ~= nil then
    what = what .. ", " .. available.message
  end
  hs.status = "Healthy"
  hs.message = what
  if s.message ~= nil and s.message ~= "" then
    hs.message = what .. " (" .. s.message .. ")"
  end
  return hs
end

local ENDED = { RolledBack = "rolled back", Aborted = "aborted", Failed = "failed" }

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Toque operator to register the version"
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

if phase == "Promoted" then
  return serving()
end

if phase == "Superseded" then
  hs.status = "Healthy"
  hs.message = text(obj.status.message, "superseded by a newer version")
  return hs
end

if ENDED[phase] ~= nil then
  local progressing = condition("Progressing")
  local why = obj.status.message
  if (why == nil or why == "") and progressing ~= nil then
    why = progressing.message
  end
  if (why == nil or why == "") then
    local registered = condition("Registered")
    if registered ~= nil then
      why = registered.message
    end
  end
  hs.status = "Degraded"
  hs.message = ENDED[phase] .. ": " .. text(why, "no reason given")
  return hs
end

if phase == "Paused" then
  return rolling("Suspended")
end

if phase == "Progressing" then
  return rolling("Progressing")
end

if phase == "Pending" or phase == "Registering" then
  local why = obj.status.message
  if why == nil or why == "" then
    local queued = condition("Queued")
    local registered = condition("Registered")
    if queued ~= nil and queued.status == "True" then
      why = queued.message
    elseif registered ~= nil then
      why = registered.message
    end
  end
  hs.status = "Progressing"
  hs.message = text(why, phase)
  return hs
end

hs.status = "Unknown"
hs.message = "unknown phase " .. tostring(phase)
return hs
