-- nmdose: Conquest DICOM server hooks for the dose PACS (Lua 5.1; issue 6 item 7, issue 14 items 1-4 and 6).
--
-- One script, two converter lines of conquest/dicom.ini, told apart by NMDOSE_STAGE:
--
--   NMDOSE_STAGE='import'  (ImportConverter: runs for each received object BEFORE Conquest writes it and enters it
--                           into its database) -- only the calling-AE check: a dose object from a calling AE title
--                           not in NMDOSE_ALLOWED_CALLING is refused (script('reject'): the C-STORE fails, nothing is
--                           stored). Nothing is handed over here: Conquest may still refuse the object after this
--                           converter (e.g. status 0x0110 "Refused to enter inconsistent link PatientID"), and a
--                           refused object must not be counted.
--   NMDOSE_STAGE='export'  (ExportConverter, ExportConverters = 1: runs AFTER Conquest has stored the object and
--                           entered it into its database; never for an object it refused) -- hands the dose object to
--                           nmdose: a byte copy of the stored file (Filename, set to Conquest's %f on the
--                           converter line) is written into <spool>/objects/, then an entry
--                           "file=<copy>\nsource=conquest\nowned=1\n" into <spool>/incoming/<name>.job.
--                           So the spool holds exactly what the dose PACS archived (the archive is the truth).
--
-- Dose objects: every SR class (the parser decides whether an SR is a dose report), PET, NM and secondary
-- captures (dose screens), by SOP class or Modality. Everything else is ignored at both stages.
--
-- Each file is written under a hidden tmp name, flushed, closed (the close is checked: a full disk shows there)
-- and renamed (atomic on one filesystem), so `nmdose dose worker` never reads a half-written copy or entry; the
-- copy is renamed before its entry exists. Lua 5.1 cannot fsync: after the rename the bytes are in the operating
-- system's page cache and survive a crash of Conquest, not a power cut or kernel crash before the kernel writes them
-- (seconds); Conquest writes its own archive the same way (no fsync), so the hand-over is as durable as the archive.
--
-- When the hand-over fails (spool missing or not writable, disk full) the export stage removes what it wrote
-- (no orphan copy), prints one line starting with *** (the only lines Conquest copies to PacsTrouble.log) with the
-- operating system's reason, and calls script('defer'): Conquest keeps the object in its ExportFailures file (on
-- disk, kept across restarts) and retries it every RetryDelay seconds (default 100) until it works. The C-STORE has
-- already succeeded by then. An object whose stored file is gone (deleted from Conquest before the retry) is not
-- deferred: a *** line says so.
--
-- Globals Conquest provides: Data (Data.SOPClassUID, Data.Modality, Data.SOPInstanceUID, Data:Write(path)),
-- Association (Association.Calling), script (converter commands); Filename is set by the export line itself.
-- Settings (Lua globals set on the converter line before the dofile, or the Conquest service's environment):
--   NMDOSE_STAGE           'import' or 'export' (required; see above)
--   NMDOSE_SPOOL           spool folder (default /var/spool/nmdose/dose; env NMDOSE_SPOOL)
--   NMDOSE_ALLOWED_CALLING the calling AE titles whose dose objects are taken, e.g. {ORTHANC=true} (a list
--                          {'ORTHANC', 'SRC'} or a string 'ORTHANC,SRC' also work; env NMDOSE_ALLOWED_CALLING as a
--                          comma-separated list). Required: unset, every dose object is refused.
--   NMDOSE_VERBOSE         true: one console line per object handed over
-- (NMDOSE_STAGE='respool' is used by nmdose_respool.lua: hand over an archived object again, errors raised.)
-- NMDOSE_USE_STORED_FILE (referencing Conquest's stored file instead of a copy) was removed: the worker only takes
-- files under the spool, and Conquest may rewrite or move its files; the setting is ignored.
--
-- Calling-AE check (Conquest has no per-AE store control we can rely on; anyone on the network could C-STORE a
-- forged dose report): a dose object whose calling AE title (trailing/leading spaces trimmed, case-sensitive) is
-- not in NMDOSE_ALLOWED_CALLING is refused at the import stage (a research PACS missing from the list sees its
-- forward fail instead of believing it delivered) and never handed over at the export stage (the same check runs
-- there too, so an export line without its import line still hands over no forged object). One *** line names the
-- calling AE title and the SOP Instance UID, never patient data. Non-dose objects are not checked here.

local SR_PREFIX = '1.2.840.10008.5.1.4.1.1.88.'
local IMAGE_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.128'] = true,    -- PET Image Storage
  ['1.2.840.10008.5.1.4.1.1.130'] = true,    -- Enhanced PET Image Storage
  ['1.2.840.10008.5.1.4.1.1.128.1'] = true,  -- Legacy Converted Enhanced PET
  ['1.2.840.10008.5.1.4.1.1.20'] = true,     -- NM Image Storage
  ['1.2.840.10008.5.1.4.1.1.7'] = true,      -- Secondary Capture (Philips "Dose Info" screens)
}
local MODALITIES = { PT = true, NM = true, SR = true }
local CHUNK = 1048576

local function value(field)
  local ok, v = pcall(function() return Data[field] end)
  if ok and v ~= nil then return tostring(v) end
  return ''
end

local function wanted(sop_class, modality)
  if string.sub(sop_class, 1, string.len(SR_PREFIX)) == SR_PREFIX then return true end
  if IMAGE_CLASSES[sop_class] then return true end
  return MODALITIES[modality] == true
end

local function safe_name(text)
  return (string.gsub(text, '[^%w%.%-]', '_'))
end

-- Conquest never seeds Lua's generator; its Lua state lives per association (import) or per export queue (export):
-- seed once per state from the time, the clock and this state's own address, so two states never draw alike.
if not NMDOSE_RANDOM_SEEDED then
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) +
                  (tonumber(string.match(tostring({}), '0x(%x+)') or '0', 16) or 0) % 1000000007)
  NMDOSE_RANDOM_SEEDED = true
end

local function unique_name(sop)
  -- time + clock + a random part: names sort by arrival, never collide between Conquest threads
  return string.format('%012d-%09d-%s-%06d', os.time(), math.floor(os.clock() * 1e6) % 1e9,
                       safe_name(sop), math.random(0, 999999))
end

local function fail(what, err)
  error('cannot ' .. what .. ': ' .. tostring(err), 0)
end

local function write_io(path, fill)
  -- open, fill(fh), flush, close: each step checked (Lua's io returns nil and the operating system's message)
  local fh, err = io.open(path, 'wb')
  if not fh then error('cannot write ' .. tostring(err), 0) end  -- err is "<path>: <the system's reason>"
  local filled, fill_err = pcall(fill, fh)
  if not filled then fh:close() error(fill_err, 0) end
  local flushed, flush_err = fh:flush()
  if not flushed then fh:close() fail('write ' .. path, flush_err) end
  local closed, close_err = fh:close()
  if not closed then fail('write ' .. path, close_err) end
end

local function write_new(tmp, final, writer)
  -- writer(tmp) writes the whole file under its tmp name; then the rename makes it appear at once under final.
  -- On any failure tmp is removed.
  local done, err = pcall(function()
    writer(tmp)
    local renamed, rename_err = os.rename(tmp, final)
    if not renamed then fail('rename to ' .. final, rename_err) end
  end)
  if not done then
    os.remove(tmp)
    error(err, 0)
  end
end

local function trim(text)
  return (string.gsub(string.gsub(text, '^%s+', ''), '%s+$', ''))
end

local function printable_line(text)
  -- an error message in one log line, bounded (paths are ours, not the sender's; Conquest's print buffer is 2000)
  return string.sub((string.gsub(text, '%c', ' ')), 1, 500)
end

local function printable(text)
  -- sender-controlled text in a log line: one line, bounded
  return string.sub((string.gsub(text, '%c', '?')), 1, 64)
end

local function calling_ae()
  -- the export stage runs in Conquest's export queue, where Association.Calling is empty (measured, 1.5.0e): its
  -- converter line passes Conquest's %u (the calling AE title of the association that stored the object)
  if NMDOSE_STAGE == 'export' and type(NMDOSE_CALLING) == 'string' then return trim(NMDOSE_CALLING) end
  local ok, v = pcall(function() return Association.Calling end)
  if ok and v ~= nil then return trim(tostring(v)) end
  return ''
end

local function allowed_callings()
  -- the set of allowed calling AE titles, or nil when the setting is missing
  local setting = NMDOSE_ALLOWED_CALLING
  if setting == nil then setting = os.getenv('NMDOSE_ALLOWED_CALLING') end
  local set = {}
  if type(setting) == 'table' then
    for k, v in pairs(setting) do
      if type(k) == 'string' and v == true then set[trim(k)] = true end
      if type(k) == 'number' and type(v) == 'string' then set[trim(v)] = true end
    end
  elseif type(setting) == 'string' and trim(setting) ~= '' then
    for item in string.gmatch(setting, '[^,]+') do set[trim(item)] = true end
  else
    return nil
  end
  set[''] = nil
  return set
end

local function conquest(command)
  -- a converter command to Conquest (no-op where `script` is not there)
  pcall(function() script(command) end)
end

local function check_calling(outcome)
  -- 'allowed', or the log line for a dose object from a calling AE title that may not send it
  local calling = calling_ae()
  local allowed = allowed_callings()
  local what = 'dose object ' .. printable(value('SOPInstanceUID')) .. ' from calling AE title \'' ..
               printable(calling) .. '\''
  if allowed == nil then
    return 'NMDOSE_ALLOWED_CALLING is not set: ' .. outcome .. ' ' .. what ..
           '; list the AE titles that may send dose objects in dicom.ini'
  end
  if calling == '' or not allowed[calling] then
    return outcome .. ' ' .. what .. ' (not in NMDOSE_ALLOWED_CALLING)'
  end
  return 'allowed'
end

local function copy_stored(source)
  -- a writer: the stored file's bytes, as Conquest archived them
  return function(tmp)
    local input, err = io.open(source, 'rb')
    if not input then error('cannot read the stored file ' .. tostring(err), 0) end
    local copied, copy_err = pcall(write_io, tmp, function(fh)
      while true do
        local block = input:read(CHUNK)
        if not block then break end
        local wrote, write_err = fh:write(block)
        if not wrote then fail('write ' .. tmp, write_err) end
      end
    end)
    input:close()
    if not copied then error(copy_err, 0) end
  end
end

local function conquest_write(tmp)
  -- a writer: Conquest's own Data:Write (it says nothing when it cannot write: open the file first for the
  -- operating system's reason, and check something was written)
  write_io(tmp, function() end)
  Data:Write(tmp)
  local fh = io.open(tmp, 'rb')
  local size = fh and fh:seek('end') or 0
  if fh then fh:close() end
  if size == 0 then fail('write ' .. tmp, 'Data:Write wrote nothing') end
end

local function stored_file()
  -- the file Conquest stored (export stage: Filename='%f' on the converter line), or nil
  if type(Filename) ~= 'string' or Filename == '' then return nil end
  local fh = io.open(Filename, 'rb')
  if not fh then return nil end
  fh:close()
  return Filename
end

local function hand_over()
  -- export stage: copy the stored object into objects/, then its entry into incoming/
  local spool = NMDOSE_SPOOL or os.getenv('NMDOSE_SPOOL') or '/var/spool/nmdose/dose'
  local name = unique_name(value('SOPInstanceUID'))
  local source = stored_file()
  if not source and type(Filename) == 'string' and Filename ~= '' then
    return 'gone', 'stored file ' .. printable_line(Filename) .. ' of ' .. printable(value('SOPInstanceUID')) ..
                   ' is gone (deleted from Conquest?): not handed over'
  end
  local copy = spool .. '/objects/' .. name .. '.dcm'
  -- without Filename (a converter line without Filename='%f'), Conquest's own writer
  write_new(spool .. '/objects/.' .. name .. '.tmp', copy, source and copy_stored(source) or conquest_write)
  local entered, err = pcall(write_new, spool .. '/incoming/.' .. name .. '.tmp',
                             spool .. '/incoming/' .. name .. '.job', function(tmp)
    write_io(tmp, function(fh)
      local wrote, write_err = fh:write('file=' .. copy .. '\nsource=conquest\nowned=1\n')
      if not wrote then fail('write ' .. tmp, write_err) end
    end)
  end)
  if not entered then
    -- no entry, so the worker would never see the copy: remove it rather than leave an orphan
    os.remove(copy)
    error(err, 0)
  end
  return 'spooled'
end

local function stage()
  if NMDOSE_STAGE == 'import' or NMDOSE_STAGE == 'export' or NMDOSE_STAGE == 'respool' then return NMDOSE_STAGE end
  if not NMDOSE_STAGE_WARNED then
    NMDOSE_STAGE_WARNED = true
    print('*** nmdose_import.lua: NMDOSE_STAGE is ' .. printable(tostring(NMDOSE_STAGE)) .. ', not \'import\' ' ..
          'or \'export\': set it on both converter lines (conquest/dicom.ini); taken as ' ..
          ((type(Filename) == 'string' and Filename ~= '') and 'export' or 'import'))
  end
  if type(Filename) == 'string' and Filename ~= '' then return 'export' end
  return 'import'
end

local function run()
  local sop_class = value('SOPClassUID')
  local modality = value('Modality')
  if not wanted(sop_class, modality) then return end
  local current = stage()
  if current == 'respool' then
    -- nmdose_respool.lua: an object Conquest archived (the import stage admitted it); no Conquest queue to defer to
    local ok, result, detail = pcall(hand_over)
    if not ok then error(result, 0) end
    if result == 'gone' then error(detail, 0) end
    NMDOSE_RESULT = result
    return
  end
  local checked, verdict = pcall(check_calling, current == 'import' and 'refused' or 'not handed over:')
  if not checked then verdict = 'calling AE check failed, refused a dose object: ' .. printable(tostring(verdict)) end
  if current == 'import' then
    if verdict ~= 'allowed' then
      conquest('reject')
      print('*** nmdose_import.lua: ' .. verdict .. ' (not stored)')
    end
    return
  end
  if verdict ~= 'allowed' then
    -- already stored (the import line was missing or let it through): say so, never hand it over
    print('*** nmdose_import.lua: ' .. verdict .. ' (it is stored in Conquest: delete it there if forged)')
    return
  end
  local ok, result, detail = pcall(hand_over)
  if not ok then
    -- the object is stored in Conquest; Conquest keeps it in its ExportFailures file and retries
    print('*** nmdose_import.lua: not handed over, Conquest retries later: ' .. printable_line(tostring(result)))
    conquest('defer')
  elseif result == 'gone' then
    print('*** nmdose_import.lua: ' .. detail)
  elseif NMDOSE_VERBOSE then
    print('nmdose_import.lua: spooled ' .. printable(value('SOPInstanceUID')) .. ' from ' .. printable(calling_ae()))
  end
end

run()
