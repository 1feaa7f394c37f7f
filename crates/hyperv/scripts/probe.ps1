# polyvisor-hyperv script: probe v1
$h = Get-VMHost
Out-PvJson ([ordered]@{ ComputerName = $h.ComputerName; VirtualMachinePath = $h.VirtualMachinePath; VirtualHardDiskPath = $h.VirtualHardDiskPath; VmCount = @(Get-VM).Count })
