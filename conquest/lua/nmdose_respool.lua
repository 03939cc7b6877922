-- nmdose: hand the dose objects Conquest stored in the last hours over to nmdose again (Lua 5.1, run by dgate).
--
-- Conquest's export queue lives in memory: when Conquest is killed or its host fails, objects it had stored but
-- not yet passed to the ExportConverter are in its archive without having reached the spool (measured on 1.5.0e:
-- kill -9 right after 30 C-STOREs: 9, 24 and 30 of the 30 handed over in three runs). Run this after such a stop,
-- in Conquest's folder (dgate reads dicom.ini there for its database and MAGDevices), as Conquest's account:
--
--   ./dgate "--dolua:NMDOSE_HOURS=24 NMDOSE_SPOOL='/var/spool/nmdose/dose' dofile('/opt/nmdose/conquest/lua/nmdose_respool.lua')"
--
-- It queries Conquest's database for the images entered in the last NMDOSE_HOURS hours (DICOMImages.AccessTime,
-- default 24), and hands every dose object among them (the same choice as nmdose_import.lua: SR, PET, NM,
-- secondary capture) over like the ExportConverter does: a byte copy of the stored file into <spool>/objects/,
-- then its entry. Objects already ingested are recognised by the worker (same bytes: "unchanged"), so running it
-- too often costs only time. Prints one line per failure (starting with ***) and a summary line.

local here = string.match(debug.getinfo(1, 'S').source, '^@(.*)[/\\]') or '.'
local hours = tonumber(NMDOSE_HOURS) or 24
local since = os.time() - math.floor(hours * 3600)
local section = gpps('sscscp', 'MicroPACS', 'sscscp')
if section == nil or section == '' then section = 'sscscp' end

local rows = dbquery('DICOMImages', 'SOPInstanc,SOPClassUI,ObjectFile,DeviceName,SeriesInst',
                     'AccessTime >= ' .. since)
if rows == nil then error('nmdose_respool.lua: the query of Conquest\'s DICOMImages table failed') end

local modality_of = {}
local function modality(series)
  if modality_of[series] == nil then
    local found = dbquery('DICOMSeries', 'Modality', 'SeriesInst = \'' .. string.gsub(series, '\'', '') .. '\'')
    modality_of[series] = (found and found[1] and found[1][1]) or ''
  end
  return modality_of[series]
end

local counts = { seen = 0, spooled = 0, ignored = 0, failed = 0 }
for _, row in ipairs(rows) do
  counts.seen = counts.seen + 1
  local sop, sop_class, object_file, device, series = row[1], row[2], row[3], row[4], row[5]
  local number = string.match(device or '', '^MAG(%d+)')
  local root = number and gpps(section, 'MAGDevice' .. number, '') or ''
  NMDOSE_STAGE = 'respool'
  NMDOSE_RESULT = nil
  Filename = root .. object_file
  Data = { SOPClassUID = sop_class, Modality = modality(series), SOPInstanceUID = sop }
  local ok, err = pcall(function()
    if root == '' then error('device ' .. tostring(device) .. ' is not a MAG device in dicom.ini', 0) end
    dofile(here .. '/nmdose_import.lua')
  end)
  if not ok then
    counts.failed = counts.failed + 1
    print('*** nmdose_respool.lua: ' .. sop .. ': ' .. string.sub(tostring(err), 1, 400))
  elseif NMDOSE_RESULT == 'spooled' then
    counts.spooled = counts.spooled + 1
  else
    counts.ignored = counts.ignored + 1
  end
end
print(string.format('nmdose_respool.lua: %d objects stored in the last %s hours: %d dose objects handed over, ' ..
                    '%d others, %d failed', counts.seen, tostring(hours), counts.spooled, counts.ignored,
                    counts.failed))
