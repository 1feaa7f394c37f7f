# polyvisor-hyperv script: power v1
$vm = Get-PvVm $pv.id
switch ($pv.action) {
  'start'   { Start-VM -VM $vm }
  'turnoff' { Stop-VM -VM $vm -TurnOff -Force }
  'shutdown' {
    $job = Stop-VM -VM $vm -Force -AsJob
    if (-not (Wait-Job -Job $job -Timeout $pv.timeout)) {
      Stop-Job -Job $job
      Stop-Pv "the guest did not shut down within $($pv.timeout) s" 'OperationTimeout' 'PolyvisorShutdownTimeout'
    }
    Receive-Job -Job $job
  }
  'restart' { Restart-VM -VM $vm -Force }
  'suspend' { Suspend-VM -VM $vm }
  'resume'  { Resume-VM -VM $vm }
  'save'    { Save-VM -VM $vm }
  default   { Stop-Pv "unknown power action" 'InvalidArgument' 'PolyvisorBadAction' }
}
Out-PvJson (ConvertTo-PvVm (Get-PvVm $pv.id))
