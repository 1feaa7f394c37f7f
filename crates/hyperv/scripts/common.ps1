# polyvisor-hyperv common v1: helpers every script shares (fixed text; values arrive in $pv).
function Out-PvJson($o) { ConvertTo-Json -InputObject $o -Depth 6 -Compress }
function Stop-Pv([string]$msg, [string]$cat, [string]$id) {
  Write-Error -Message $msg -Category $cat -ErrorId $id
}
function Get-PvVm([string]$id) {
  $vm = Get-VM -Id $id -ErrorAction SilentlyContinue
  if (-not $vm) { Stop-Pv "Hyper-V was unable to find a virtual machine with ID $id." 'ObjectNotFound' 'PolyvisorVmNotFound' }
  $vm
}
function ConvertTo-PvVm($vm) {
  [ordered]@{
    Id = "$($vm.Id)"; Name = $vm.Name; State = "$($vm.State)"; Notes = "$($vm.Notes)"
    ProcessorCount = $vm.ProcessorCount; MemoryStartup = $vm.MemoryStartup; Generation = $vm.Generation
    Path = $vm.Path; ComputerName = $vm.ComputerName
    NetworkAdapters = @($vm.NetworkAdapters | ForEach-Object {
      [ordered]@{ Name = $_.Name; MacAddress = $_.MacAddress; SwitchName = $_.SwitchName; IPAddresses = @($_.IPAddresses) } })
    HardDrives = @($vm.HardDrives | ForEach-Object { $_.Path })
  }
}
