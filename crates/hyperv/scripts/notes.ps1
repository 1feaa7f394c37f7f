# polyvisor-hyperv script: notes v1
$vm = Get-PvVm $pv.id
if ("$($vm.Notes)" -ne $pv.expect) { Stop-Pv "the VM's notes changed meanwhile" 'ResourceBusy' 'PolyvisorNotesChanged' }
Set-VM -VM $vm -Notes $pv.notes
Out-PvJson (ConvertTo-PvVm (Get-PvVm $pv.id))
